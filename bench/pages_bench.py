"""The customer page of a customer with 10,000 events: server time, and the time to a rendered page in Chromium.

Run:  .venv/bin/python bench/pages_bench.py [--events 10000] [--rounds 30]

On a fresh SQLite store holding one customer of ``--events`` events (deposits,
withdrawals, visits and a few corrections over about three years), in the same run:

- server time: ``GET /customers/{id}`` through the ASGI app in process (no network), signed in as an
  RM (the full page: state, explanation, charts, the timeline with PII opened, two access records),
  interleaved with ``GET /v1/customers/{id}/explain`` of the same customer (the API's answer behind the
  state box: the baseline); p50/p99 of each and the ratio of the medians; the first (cold) page apart;
- browser: a real ``timeline serve`` and the system's Chromium (Playwright): navigation start to the
  load event of the same page, median of ``--browser-rounds``.

Prints one JSON object (also saved in bench/out/pages.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

OUT = Path(__file__).resolve().parent / "out"
TIMELINE = Path(sys.executable).with_name("timeline")
CHROMIUM = "/usr/bin/chromium"


def history(count: int) -> list[dict]:
    """One customer's events, in business order, ending before now."""
    start = dt.datetime(2023, 12, 1, 1, 0, tzinfo=dt.UTC)
    step = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC) - start) / count

    def event(kind: str, i: int, data: dict, event_id: str | None = None) -> dict:
        return {
            "event_id": event_id or str(uuid.uuid4()),
            "type": kind,
            "customer_id": "C1",
            "occurred_at": (start + step * i).isoformat(),
            "data": data,
        }

    events = [
        event(
            "customer.registered",
            0,
            {
                "name": "王小明",
                "birth_date": "1980-05-02",
                "phone": "+86 138 0013 8000",
                "branch_id": "BR001",
                "relationship_manager": "RM001",
                "segment": "individual",
            },
        )
    ]
    for i in range(1, count):
        kind = i % 5
        if kind in (0, 1):
            deposit_id = str(uuid.uuid4())
            amount = f"{1000 + (i % 7) * 250}.00"
            events.append(
                event("deposit.made", i, {"account_id": "A1", "amount": amount, "product": "demand"}, deposit_id)
            )
            if i % 500 == 0:
                events.append(event("correction.recorded", i, {"voids_event_id": deposit_id, "reason": "twice"}))
        elif kind == 2:
            events.append(event("withdrawal.made", i, {"account_id": "A1", "amount": "800.00"}))
        else:
            events.append(event("visit.recorded", i, {"channel": "phone", "purpose": "check-in"}))
    return events[:count]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "n": len(values),
    }


def server_time(url: str, rounds: int) -> dict:
    from fastapi.testclient import TestClient

    from timeline.application.access import Grants
    from timeline.http.app import create_app
    from timeline.http.service import Service, ServiceOptions

    service = Service(ServiceOptions(store_url=url))
    token = Grants(service.access).grant("bench-rm", "rm", "RM001")
    client = TestClient(create_app(service), follow_redirects=False)
    client.get("/")
    client.post("/sign-in", data={"token": token, "csrf": client.cookies["tl_csrf"]})
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    first = client.get("/customers/C1")
    cold = time.perf_counter() - started
    assert first.status_code == 200, first.text[:500]
    pages, explains = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        assert client.get("/customers/C1").status_code == 200
        pages.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert client.get("/v1/customers/C1/explain", headers=headers).status_code == 200
        explains.append(time.perf_counter() - started)
    service.close()
    page, explain = summary(pages), summary(explains)
    return {
        "cold_page_ms": round(cold * 1000, 1),
        "page": page,
        "api_explain_baseline": explain,
        "ratio_p50_page_over_explain": round(page["p50_ms"] / explain["p50_ms"], 2),
        "page_bytes": len(first.content),
    }


def browser_time(url: str, rounds: int) -> dict:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = subprocess.run(
        [str(TIMELINE), "access", "grant", "bench-rm-2", "--role", "rm", "--rm", "RM001", "--db", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    process = subprocess.Popen([str(TIMELINE), "serve", "--db", url, "--port", str(port)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(base + "/")
            page.get_by_label("API token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.goto(base + "/customers/C1")  # warm: the fold is cached, as on a running service
            loads = []
            for _ in range(rounds):
                page.goto(base + "/customers/C1", wait_until="load")
                timing = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
                entry = json.loads(timing)
                loads.append((entry["loadEventEnd"] - entry["startTime"]) / 1000)
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    return {"navigation_to_load": summary(loads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--browser-rounds", type=int, default=10)
    args = parser.parse_args()

    import timeline

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/pages.db"
        events = history(args.events)
        with timeline.open(url) as tl:
            report = tl.ingest(events)
            assert report.rejected == 0, report.rejects[:3]
        result = {
            "events": len(events),
            "server": server_time(url, args.rounds),
            "browser": browser_time(url, args.browser_rounds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    OUT.mkdir(exist_ok=True)
    (OUT / "pages.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

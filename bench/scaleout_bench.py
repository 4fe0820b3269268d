"""The summary read model scaled out: apply rate with 1, 2 and 3 member processes of one group.

Run:  .venv/bin/python bench/scaleout_bench.py [--customers 800 --years 3] [--members 1,2,3] [--partitions 6]

One PostgreSQL server and one Tansu broker, in one run. A generated branch is
ingested and published once with the relay into a fresh topic of
``--partitions`` partitions. Then, for each count N of ``--members``, a fresh
read-model database and a new group: N ``timeline consume summary``
processes start together, each serving ``/metrics``. The rate counts from the
moment the group holds N members that share every partition (from their
``timeline_consumer_lag`` series) to the moment their
``timeline_consumer_messages_total{outcome="applied"}`` add up to every event;
what the first members applied while the others were still joining is left
out. Writes ``bench/out/scaleout_bench.json`` too.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import KEK, OUT, fresh_db, generated_history, ingest_file  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.kafka import free_port, start_broker  # noqa: E402
from timeline.consumers.relay.relay import Relay  # noqa: E402
from timeline.crypto import KeyWrapper  # noqa: E402
from timeline.engine import Engine  # noqa: E402
from timeline.store import open_store  # noqa: E402

TIMELINE = str(Path(sys.executable).with_name("timeline"))
NOW = "2026-11-01T00:00:00Z"


def scrape(port: int) -> tuple[float, set[str]]:
    """(messages applied, partitions assigned) of one member; (0, none) while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0, set()
    applied, partitions = 0.0, set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "timeline_consumer_messages_total" and s.labels.get("outcome") == "applied":
                applied += s.value
            elif s.name == "timeline_consumer_lag":
                partitions.add(s.labels["partition"])
    return applied, partitions


def run_members(n: int, bootstrap: str, topic: str, events: int, partitions: int) -> dict[str, Any]:
    read_url, drop = fresh_db()
    group = f"scaleout-{n}-{uuid.uuid4().hex[:6]}"
    ports = [free_port() for _ in range(n)]
    started = time.monotonic()
    members = [
        subprocess.Popen(
            [
                TIMELINE,
                "consume",
                "summary",
                "--db",
                read_url,
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--group",
                group,
                "--now",
                NOW,
                "--tick-interval",
                "0",
                "--metrics-port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for port in ports
    ]
    try:
        formed_at, formed_applied = None, 0.0
        while True:
            readings = [scrape(p) for p in ports]
            applied = sum(a for a, _ in readings)
            held = [ps for _, ps in readings]
            now = time.monotonic()
            if formed_at is None and all(held) and sum(map(len, held)) == partitions:
                formed_at, formed_applied = now, applied
            if applied >= events:
                break
            if now - started > 900:
                raise RuntimeError(f"{n} members: {applied:.0f} of {events} applied after 900 s")
            time.sleep(0.1)
        if formed_at is None:  # caught up before the last member joined
            formed_at, formed_applied = started, 0.0
        seconds = now - formed_at
        return {
            "members": n,
            "events": events,
            "group_formed_after_s": round(formed_at - started, 2),
            "applied_before_formed": int(formed_applied),
            "measured_events": int(events - formed_applied),
            "seconds": round(seconds, 2),
            "events_per_second": round((events - formed_applied) / seconds, 1) if seconds > 0 else None,
        }
    finally:
        for m in members:
            m.send_signal(signal.SIGTERM)
        for m in members:
            try:
                m.wait(30)
            except subprocess.TimeoutExpired:
                m.kill()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--members", default="1,2,3", help="Comma-separated member counts, one run each.")
    args = parser.parse_args()
    counts = [int(c) for c in args.members.split(",")]

    OUT.mkdir(exist_ok=True)
    store_url, drop_store = fresh_db()
    broker = start_broker(OUT)
    try:
        path = generated_history(args.customers, args.years, args.seed)
        ingest_file(store_url, path)
        topic = f"scaleout-{uuid.uuid4().hex[:6]}"
        engine = Engine(open_store(store_url), KeyWrapper(KEK))
        try:
            relay = Relay(engine.store, broker.bootstrap, topic, partitions=args.partitions, batch_size=5000)
            events = relay.run(stop_when_caught_up=True).published  # the ingest's and the requalification's
            relay.close()
        finally:
            engine.close()
        print(f"{events} events of {args.customers} customers on {args.partitions} partitions", flush=True)
        results = []
        for n in counts:
            result = run_members(n, broker.bootstrap, topic, events, args.partitions)
            print(json.dumps(result), flush=True)
            results.append(result)
        (OUT / "scaleout_bench.json").write_text(json.dumps({"runs": results}, indent=2) + "\n")
    finally:
        broker.stop()
        drop_store()


if __name__ == "__main__":
    main()

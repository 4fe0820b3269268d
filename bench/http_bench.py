"""The HTTP service: `GET …/state` latency at a steady rate, and `POST /v1/events` against `timeline ingest`.

Run:  .venv/bin/python bench/http_bench.py [--customers 500 --years 3] [--seconds 15]

On one generated branch and fresh PostgreSQL databases of the benchmark server, in the same run:

- ingest: the whole file through `timeline ingest` (a process, as an operator runs it) into one database,
  and through `POST /v1/events` in bodies of 1,000 lines to a `timeline serve` of another (the time
  from the first request to the last answer); the ratio is HTTP's time over the CLI's;
- state: after one unmeasured request per customer (the service warm, as one that has run a while),
  `GET /v1/customers/{id}/state` of random customers, open loop at a steady rate (each request
  is due at its instant and its latency counts from then, so a slow answer delays the count, never
  hides), first at 200 requests/s, then at doubling rates until p99 passes 50 ms; side by side with
  the same state asked in process (`timeline.open(url).state(id)`, the ceiling).

The server is one uvicorn process, started as `timeline serve`; the client, one event loop over
kept-alive connections, shares the machine with it. Prints one JSON object (also saved in bench/out/http.json).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KEK, OUT, fresh_db, generated_history  # noqa: E402

import timeline  # noqa: E402

CONNECTIONS = 32
"""Kept-alive client connections: enough that a slow answer never holds back the next due."""
TIMELINE = str(Path(sys.executable).with_name("timeline"))


def _env(url: str) -> dict[str, str]:
    kek = base64.urlsafe_b64encode(KEK).rstrip(b"=").decode()
    return {**os.environ, "TIMELINE_DB": url, "TIMELINE_KEK": kek}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grant(url: str, name: str, role: str) -> str:
    run = subprocess.run(
        [TIMELINE, "access", "grant", name, "--role", role, "--json"], env=_env(url), capture_output=True, text=True
    )
    if run.returncode:
        raise SystemExit(run.stderr)
    return json.loads(run.stdout)["token"]


class Server:
    def __init__(self, url: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [TIMELINE, "serve", "--port", str(self.port)],
            env=_env(url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("timeline serve did not start")

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def cpu_seconds(self) -> float:
        """The CPU time the server process has used so far, its threads' user and system time."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


def ingest_cli(url: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([TIMELINE, "ingest", str(path)], env=_env(url), capture_output=True, check=False)
    return time.perf_counter() - started


def ingest_http(server: Server, token: str, path: Path, batch: int = 1000) -> float:
    lines = path.read_bytes().splitlines()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        for start in range(0, len(lines), batch):
            answer = client.post("/v1/events", content=b"\n".join(lines[start : start + batch]) + b"\n")
            if answer.status_code != 200:
                raise SystemExit(f"POST /v1/events: {answer.status_code} {answer.text[:300]}")
        return time.perf_counter() - started


def steady(server: Server, token: str, customers: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Open loop at ``rate``: request i is due at start + i / rate; its latency counts from then.

    With the server's CPU time per request: on a shared machine latency swings with the neighbours' load from one
    run to the next, the CPU a request costs far less."""
    cpu = server.cpu_seconds()
    result = asyncio.run(_steady(server, token, customers, rate, seconds))
    result["server_cpu_ms_per_request"] = round((server.cpu_seconds() - cpu) / result["requests"] * 1000, 2)
    return result


async def _steady(server: Server, token: str, customers: list[str], rate: float, seconds: float) -> dict[str, float]:
    """The requests over ``CONNECTIONS`` kept-alive connections, each written as bytes and read by its length.

    A request's latency counts from the instant it is due, or from when the client's timer woke if that was
    later (the event loop's timers are of millisecond grain); a wait for a free connection counts. The
    client is an event loop, not threads with an HTTP library: httpx's 32 threads cost more CPU per
    request than the service's answer, on the same two cores (BENCHMARKS.md, fifth day, has both).
    """
    total = int(rate * seconds)
    rng = random.Random(7)
    requests = [
        f"GET /v1/customers/{rng.choice(customers)}/state HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
        for _ in range(total)
    ]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", server.port))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0

    async def one(i: int, since: float) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        writer.write(requests[i])
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        latencies.append(loop.time() - since)
        errors += not status.startswith(b"HTTP/1.1 200 ")  # b"" if the service closed the connection
        idle.put_nowait((reader, writer))

    start = loop.time() + 0.2
    pending = []
    for i in range(total):
        due = start + i / rate
        pause = due - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        pending.append(asyncio.create_task(one(i, max(due, loop.time()))))
    await asyncio.gather(*pending)
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    return {"rate": rate, "requests": total, "errors": errors, **_quantiles(latencies)}


def warm(server: Server, token: str, customers: list[str]) -> None:
    """Unmeasured, as a service that has run a while: one request per customer (a running service has read and
    folded its customers' streams once; a stream's first fold is what `bench/state_bench.py` measures), then
    three seconds at the steady rate (the first concurrent requests open the store's pooled connections and
    the server's worker threads: 30-290 ms each, once)."""
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for customer_id in customers:
            client.get(f"/v1/customers/{customer_id}/state")
    steady(server, token, customers, 200, 3)


def in_process(url: str, customers: list[str], calls: int) -> dict[str, float]:
    rng = random.Random(7)
    with timeline.open(url, kek=KEK, create=False) as tl:
        tl.state(customers[0])
        samples = []
        for _ in range(calls):
            customer = rng.choice(customers)
            started = time.perf_counter()
            tl.state(customer)
            samples.append(time.perf_counter() - started)
    return _quantiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--years", type=float, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    path = generated_history(args.customers, args.years, args.seed)
    events = sum(1 for _ in path.open("rb"))
    cli_url, drop_cli = fresh_db()
    http_url, drop_http = fresh_db()
    server = None
    try:
        cli_seconds = ingest_cli(cli_url, path)
        subprocess.run([TIMELINE, "init"], env=_env(http_url), capture_output=True, check=True)
        source, reader = _grant(http_url, "bench-source", "source"), _grant(http_url, "bench-reader", "compliance")
        server = Server(http_url)
        http_seconds = ingest_http(server, source, path)
        with timeline.open(http_url, kek=KEK, create=False) as tl:
            customers = sorted(tl.engine.store.customer_ids())
        ceiling = in_process(http_url, customers, 2000)
        warm(server, reader, customers)
        runs = [steady(server, reader, customers, 200, args.seconds)]
        rate = 400.0
        while runs[-1]["p99_ms"] < 50 and rate <= 6400:
            runs.append(steady(server, reader, customers, rate, args.seconds / 2))
            rate *= 2
        sustained = max((r["rate"] for r in runs if r["p99_ms"] < 50 and not r["errors"]), default=None)
        peak = server.peak_rss_mb()
    finally:
        if server is not None:
            server.stop()
        drop_cli()
        drop_http()
    result = {
        "events": events,
        "ingest": {
            "cli_seconds": round(cli_seconds, 2),
            "http_seconds": round(http_seconds, 2),
            "http_over_cli": round(http_seconds / cli_seconds, 2),
        },
        "state_in_process": ceiling,
        "state_http": runs,
        "highest_rate_p99_under_50ms": sustained,
        "server_peak_rss_mb": peak,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "http.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

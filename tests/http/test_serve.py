"""``timeline serve``: a real service process, a token granted while it runs, a first call."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

import timeline
from tests.factories import registered

TIMELINE = Path(sys.executable).with_name("timeline")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_alive(base: str, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("timeline serve did not come up")


def test_serve_answers_a_token_granted_while_it_runs(sqlite_url):
    with timeline.open(sqlite_url) as tl:
        tl.ingest([registered("C1")])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(TIMELINE), "serve", "--db", sqlite_url, "--port", str(port)], stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_alive(base, process)
        granted = subprocess.run(
            [str(TIMELINE), "access", "grant", "carol", "--role", "compliance", "--db", sqlite_url],
            capture_output=True,
            text=True,
            check=True,
        )
        token = granted.stdout.splitlines()[-1]
        response = httpx.get(f"{base}/v1/customers/C1/state", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["customer_id"] == "C1"
        assert httpx.get(f"{base}/v1/customers/C1/state").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert stderr.startswith(f"serving {sqlite_url} on {base}")


def test_serving_a_store_that_does_not_exist_is_one_line_and_exit_2(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    run = subprocess.run([str(TIMELINE), "serve", "--db", url], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr == f"timeline: error: no timeline store at {url}\n"


def test_a_port_in_use_is_one_line_and_exit_2(sqlite_url):
    with timeline.open(sqlite_url) as tl:
        tl.ingest([registered("C1")])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [str(TIMELINE), "serve", "--db", sqlite_url, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == f"timeline: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_the_served_connections_send_without_nagles_delay():
    """The listening socket is TCP to asyncio, so each accepted connection has TCP_NODELAY: with Nagle's algorithm
    an answer's body waited behind its headers for the client's delayed ACK, 40 ms on every kept-alive request."""
    from timeline.cli.serve import _listen

    async def nodelay_of_an_accepted_connection() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(
                    transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                )

        listening = _listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname())
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own: an earlier test may leave one running in this thread
        assert thread.submit(asyncio.run, nodelay_of_an_accepted_connection()).result() != 0

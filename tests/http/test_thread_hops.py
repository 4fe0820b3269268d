"""Worker-thread hops a request costs: each one is a wake-up of a pooled thread and one of the event loop.

A plain ``def`` route runs in a worker thread, and so does each plain ``def`` dependency, one hop each (and FastAPI
checks a returned ``dict`` against the response model in another). A customer's state, explanation and history
check the token inside the route's own thread and answer bytes; the role check of every other route is
``async``, since it reads nothing.
"""

from __future__ import annotations

import functools

import anyio.to_thread
import pytest


def _name(func: object) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", repr(func))


@pytest.fixture
def hops(monkeypatch) -> list[str]:
    """The name of every function run in a worker thread from now on, in order."""
    ran: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        ran.append(_name(func))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return ran


@pytest.mark.parametrize("what", ["state", "explain", "history"])
def test_a_customer_read_is_one_hop_token_check_included(served, hops, what):
    answer = served.get(f"/v1/customers/C1/{what}", "rm")
    assert answer.status_code == 200, answer.text
    assert len(hops) == 1, hops
    assert "principal" not in hops


def test_a_role_checked_route_hops_for_the_token_the_route_and_its_answer_not_the_role(served, hops):
    answer = served.get("/v1/customers", "compliance")
    assert answer.status_code == 200, answer.text
    assert "principal" in hops
    assert "allowed" not in hops

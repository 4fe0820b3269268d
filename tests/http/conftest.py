"""A served store with two customers in different branches, and a token for each kind of caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

import timeline
from tests.factories import deposit, registered
from timeline.application.access import Grants
from timeline.http.app import create_app
from timeline.http.service import Service, ServiceOptions

EVENTS = [
    registered("C1", branch_id="BR001", relationship_manager="RM001"),
    deposit("C1", amount="1000.00"),
    registered("C2", branch_id="BR002", relationship_manager="RM002"),
]

CALLERS = {
    "compliance": ("carol", "compliance", None, None),
    "branch_head": ("bert", "branch_head", None, "BR001"),
    "rm": ("rita", "rm", "RM001", None),
    "ops": ("otto", "ops", None, None),
    "source": ("core-banking", "source", None, None),
}
"""Role → (grant name, role, rm, branch): every scoped caller sees C1 and not C2."""


@dataclass
class Served:
    client: TestClient
    service: Service
    tokens: dict[str, str]
    url: str

    def get(self, path: str, role: str | None = None, **kwargs) -> object:
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, role: str | None = None, **kwargs) -> object:
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.post(path, headers=headers, **kwargs)


def serve(url: str, **options) -> Service:
    return Service(ServiceOptions(store_url=url, **options))


@pytest.fixture
def served(sqlite_url) -> Iterator[Served]:
    with timeline.open(sqlite_url) as tl:
        report = tl.ingest(EVENTS)
        assert report.rejected == 0, report.rejects
    service = serve(sqlite_url)
    grants = Grants(service.access)
    tokens = {role: grants.grant(name, r, rm, branch) for role, (name, r, rm, branch) in CALLERS.items()}
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Served(client, service, tokens, sqlite_url)
    service.close()

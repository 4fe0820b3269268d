"""What a running service holds: the engine on its store, the access trail, the metrics, and its options."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timeline.application.access import AccessTrail, Authenticator, Grants
from timeline.application.access_jwt import JwtVerifier
from timeline.application.states import StateReader
from timeline.crypto import KekSource
from timeline.domain.roles import Principal, in_scope
from timeline.engine import Engine, open_engine
from timeline.http.metrics import Metrics
from timeline.projections.state import CustomerState
from timeline.store.access_sql import SqlAccessStore, access_store

MAX_BODY = 10 * 1024 * 1024
"""The default limit of a ``POST /v1/events`` body: 10 MiB."""
STATUS_WAIT = 3.5
"""Seconds ``/v1/status`` waits for the full report before answering without the broker (so it answers within 5 s)."""
METRICS_WAIT = 2.0
"""Seconds a ``/metrics`` scrape waits for the broker's part of the report (a scrape times out at 10 s by default)."""
_status_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="status")


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How ``timeline serve`` was asked to run."""

    store_url: str
    kek: KekSource = KekSource()
    policy: str | None = None
    max_body: int = MAX_BODY
    metrics_need_ops: bool = False
    """``/metrics`` answers only a principal of role ``ops`` (else anyone: it holds no customer data)."""
    jwt_key: Path | None = None
    """The identity provider's public key (PEM) or key set (JWKS): its JWTs are accepted as bearer tokens."""
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    read_db: str | None = None
    """The read models' database, for ``/v1/status`` (default: the store's)."""
    kafka: str | None = None
    """The broker ``/v1/status`` reports on (none: not reported)."""


class Service:
    """The engine behind the HTTP API; one per process, shared by the request threads.

    The state reader's cache and the ingestor are not made for concurrent use: a lock each. Grants are
    read from the store at every request, so a grant or a revocation takes effect from the next request.
    """

    def __init__(self, options: ServiceOptions, engine: Engine | None = None) -> None:
        self.options = options
        self.engine = engine or _open(options)
        self.access: SqlAccessStore = access_store(self.engine.store)
        jwt = JwtVerifier(options.jwt_key, options.jwt_audience, options.jwt_issuer) if options.jwt_key else None
        self.authenticator = Authenticator(Grants(self.access), jwt)
        self.trail = AccessTrail(self.access)
        self.reader = StateReader(self.engine.store, self.engine.policy)
        self.reading = threading.Lock()
        self.writing = threading.Lock()
        self.ingestor = self.engine.ingestor()
        """One ingestor for every ``POST /v1/events`` (under ``writing``): its stream cache outlives a body, so
        a body does not read again every stream the bodies before it touched. Another writer's appends are
        caught at commit, as for one long ``timeline ingest``."""
        self.metrics = Metrics(
            lambda: self.pipeline_status(METRICS_WAIT), lambda: (self.reader.fold_hits, self.reader.fold_misses)
        )

    def pipeline_status(self, wait: float = STATUS_WAIT) -> dict[str, Any]:
        """``timeline status --json`` of the store, the read model and the broker, the broker waited for at most
        ``wait`` seconds (then reported as not answering, never waited out)."""
        from timeline.consumers.status import status

        options = self.options
        read_db = options.read_db or options.store_url
        asked = _status_pool.submit(status, options.store_url, read_db, options.kafka)
        try:
            return asked.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            report = status(options.store_url, read_db, None)
            report["kafka_error"] = report["errors"]["kafka"] = (
                f"the broker at {options.kafka} did not answer within {wait:g} s"
            )
            return report

    def states_in_sight(self, who: Principal, as_of: dt.datetime | None = None) -> list[CustomerState]:
        """Every customer's state as of ``as_of``, of the customers the caller sees by their assignment as of now.

        From the reader's cached folds: a call reads only the log's events stored since the last one."""
        with self.reading:
            answers = list(self.reader.cached_states((None, None), (as_of, None)))
        return [
            then
            for _, (now, then) in answers
            if now is not None
            and then is not None
            and in_scope(who, now.assignment.branch_id, now.assignment.relationship_manager)
        ]

    def close(self) -> None:
        self.engine.close()


def _open(options: ServiceOptions) -> Engine:
    """The engine on an existing store, its KEK checked now; the access tables added if the store predates them."""
    engine = open_engine(options.store_url, kek=options.kek, policy=options.policy, create=False)
    if access_store(engine.store).has_access_tables():
        return engine
    engine.close()
    return open_engine(options.store_url, kek=options.kek, policy=options.policy, create=True)

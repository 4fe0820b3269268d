"""``timeline serve``: the engine as an HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from timeline.cli.logjson import LogJson, log_json
from timeline.cli.options import Db, PolicyOpt, settings
from timeline.cli.output import err
from timeline.domain.errors import TimelineError

log = logging.getLogger(__name__)


def serve(
    ctx: typer.Context,
    db: Db = None,
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port to listen on.")] = 8000,
    policy: PolicyOpt = None,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, metavar="BYTES", help="Largest POST /v1/events body (default 10 MiB).")
    ] = 10 * 1024 * 1024,
    metrics_need_ops: Annotated[
        bool, typer.Option("--metrics-need-ops", help="Serve /metrics only to a token of role ops.")
    ] = False,
    jwt_key: Annotated[
        Path | None,
        typer.Option("--jwt-key", metavar="FILE", help="Accept JWTs of the identity provider: its PEM key or JWKS."),
    ] = None,
    jwt_audience: Annotated[
        str | None, typer.Option("--jwt-audience", metavar="AUD", help="The aud the JWTs must carry.")
    ] = None,
    jwt_issuer: Annotated[
        str | None, typer.Option("--jwt-issuer", metavar="ISS", help="The iss the JWTs must carry.")
    ] = None,
    json_logs: LogJson = False,
) -> None:
    """Serve the store over HTTP (/v1/…, /healthz, /readyz, /metrics); callers need a token (timeline access grant)."""
    import uvicorn

    from timeline.application.process import tune_gc_for_service
    from timeline.http.app import create_app
    from timeline.http.service import Service, ServiceOptions
    from timeline.store import shown_url

    config = settings(ctx)
    json_logs = json_logs or config.log_json
    log_json(json_logs, "timeline.http.access", __name__)  # with JSON logs, one line per request too
    options = ServiceOptions(
        store_url=config.store_url(db),
        kek=config.kek_source,
        policy=config.policy_name(policy),
        max_body=max_body,
        metrics_need_ops=metrics_need_ops,
        jwt_key=jwt_key,
        jwt_audience=jwt_audience,
        jwt_issuer=jwt_issuer,
        read_db=config.read_model_url(),
        kafka=config.kafka,
    )
    service = Service(options)
    try:
        listening = _listen(host, port)
        serving = f"serving {shown_url(options.store_url)} on http://{host}:{port}"
        if json_logs:
            log.info(serving)
        else:
            err.print(serving, highlight=False, soft_wrap=True)
        # log_config=None: uvicorn's loggers go to the root handler, so its lines are JSON too when asked
        app = create_app(service)
        tune_gc_for_service()
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, log_config=None))
        try:
            server.run(sockets=[listening])
        except KeyboardInterrupt:
            pass  # Ctrl-C: the server has shut down cleanly; stopping is what was asked for
    finally:
        service.close()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line (exit 2), not the server's log."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it
    # Nagle's algorithm held each answer's body behind its headers for the client's delayed ACK (40 ms)
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise TimelineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listening

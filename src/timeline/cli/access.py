"""``timeline access grant|revoke|list|log``: API tokens of the service, and the trail of who saw what.

Grants live in the store's database (``--db``), so a running service sees a
grant or a revocation at its next request. Errors are
:class:`~timeline.domain.errors.TimelineError`: ``timeline``'s ``main`` prints
them as one line and exits 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from timeline.application.ports import AccessRecord
from timeline.cli.report import listing

if TYPE_CHECKING:  # the access layers load in the commands that use them, not at every start of timeline
    from timeline.store.access_sql import SqlAccessStore

access_app = typer.Typer(help="API tokens of the service (grants) and the access log.", no_args_is_help=True)

out = Console(highlight=False)

Db = Annotated[
    str | None,
    typer.Option("--db", envvar="TIMELINE_DB", help="sqlite:///PATH (default ./timeline.db) or postgresql://…"),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


@contextmanager
def _access(db: str | None, creating: bool = False) -> Iterator[SqlAccessStore]:
    """The access tables of an existing store; ``creating`` adds them to a store made before they existed."""
    from timeline.store import open_store
    from timeline.store.access_sql import access_store

    store = open_store(db, create=False)
    if creating and not access_store(store).has_access_tables():
        store.close()
        store = open_store(db, create=True)  # the store exists: this only adds what its schema lacks
    try:
        yield access_store(store)
    finally:
        store.close()


@access_app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="Who the token is for; names them in the access log.")],
    role: Annotated[str, typer.Option("--role", help="compliance, branch_head, rm, ops or source.")],
    rm: Annotated[str | None, typer.Option("--rm", help="Role rm: the relationship manager it acts as.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Role branch_head: the branch it heads.")] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Grant NAME a role and print its new API token, once, alone on the last line (only a hash is kept)."""
    from timeline.application.access import Grants

    with _access(db, creating=True) as store:
        token = Grants(store).grant(name, role, rm, branch)
    if json_out:
        _emit({"name": name, "role": role, "token": token})
        return
    scope = f" for relationship manager {rm}" if rm else f" for branch {branch}" if branch else ""
    out.print(f"granted {name} the role {role}{scope}; the token is shown only now, keep it secret:", soft_wrap=True)
    sys.stdout.write(token + "\n")


@access_app.command("revoke")
def revoke(name: str, db: Db = None, json_out: Json = False) -> None:
    """Revoke NAME's grant: its token is refused from the next request on, without a restart."""
    from timeline.application.access import Grants

    with _access(db) as store:
        Grants(store).revoke(name)
    if json_out:
        _emit({"name": name, "revoked": True})
    else:
        out.print(f"revoked {name}")


@access_app.command("list")
def list_grants(db: Db = None, json_out: Json = False) -> None:
    """Every grant, active and revoked, oldest first (never a token: only its hash is stored)."""
    from timeline.application.access import Grants

    with _access(db) as store:
        grants = Grants(store).list()
    if json_out:
        for g in grants:
            _emit(g.to_json())
        return
    if not grants:
        out.print("no grants")
        return
    rows = [
        (
            g.principal.name,
            str(g.principal.role),
            g.principal.rm or g.principal.branch or "",
            _seconds(g.granted_at),
            _seconds(g.revoked_at) if g.revoked_at else "active",
        )
        for g in grants
    ]
    out.print(
        listing(
            "grants", ("name", "role", "rm / branch", "granted", "revoked"), rows, whole=("role", "granted", "revoked")
        )
    )


@access_app.command("log")
def log(
    customer: Annotated[str | None, typer.Option("--customer", help="Only accesses to this customer.")] = None,
    principal: Annotated[str | None, typer.Option("--principal", help="Only this principal's accesses.")] = None,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """The access log, oldest first: who saw which customer, what, when and why."""
    from timeline.application.access import AccessTrail

    with _access(db) as store:
        records = AccessTrail(store).read(customer, principal)
        if json_out:
            for r in records:  # streamed, a page at a time: the log grows with every access
                _emit(r.to_json())
            return
        shown = list(records)
    if not shown:
        out.print("no access recorded")
        return
    out.print(_trail(shown))


def _trail(records: list[AccessRecord]) -> Table:
    """One entry per record, the instant in the margin: readable at any terminal width."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="cyan")
    grid.add_column()
    for r in records:
        head = Text(f"{r.principal} ({r.role})", style="bold")
        head.append(f" · {r.what}" + (f" · customer {r.customer_id}" if r.customer_id else ""))
        head.append(f" · #{r.seq}", style="dim")
        grid.add_row(_seconds(r.at), head)
        if r.purpose:
            grid.add_row("", Text(f"purpose: {r.purpose}", style="italic"))
    return grid


def _seconds(stamp: str) -> str:
    """A stored instant shown to the second (``--json`` keeps the microseconds)."""
    return stamp[:19] + "Z"

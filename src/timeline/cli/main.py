"""The ``timeline`` command: its commands grouped by who uses them; a user's mistake is one line and exit 2."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

# typer (0.29 on) carries its own copy of click; its exceptions are not re-exported
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from timeline.application.process import tune_gc_for_bulk_work
from timeline.cli import audit, branch, relationship, whatif
from timeline.cli.access import access_app
from timeline.cli.consumers import register as register_consumer_commands
from timeline.cli.options import Db, Json, open_engine
from timeline.cli.output import emit, err, out
from timeline.cli.plain_help import PlainGroup
from timeline.cli.policy import policy_app
from timeline.cli.relay import relay_command
from timeline.cli.serve import serve
from timeline.domain.errors import TimelineError
from timeline.settings import Settings

INGEST_AND_AUDIT = "Ingest and audit"
RELATIONSHIP_WORK = "Relationship work"
KAFKA_AND_OPERATIONS = "Kafka and operations"

app = typer.Typer(
    cls=PlainGroup,
    help="Event-sourced customer timelines for banks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from timeline import __version__

        out.print(f"timeline {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def configure(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """Read the TIMELINE_* variables once; every command takes its configuration from them."""
    ctx.obj = Settings()


def requalify(ctx: typer.Context, db: Db = None, json_out: Json = False) -> None:
    """Decide every referral qualification again (RULES §5) and append any that is missing."""
    engine = open_engine(ctx, db, create=False)
    try:
        outcomes = engine.requalify()
    finally:
        engine.close()
    appended = [o for o in outcomes if o.status == "accepted"]
    if json_out:
        emit({"appended": [str(o.event_id) for o in appended]})
    else:
        noun = "referral qualification" if len(appended) == 1 else "referral qualifications"
        out.print(f"{len(appended)} {noun} appended")


audit.register(app, INGEST_AND_AUDIT)
app.add_typer(access_app, name="access", rich_help_panel=INGEST_AND_AUDIT)
app.add_typer(policy_app, name="policy", rich_help_panel=INGEST_AND_AUDIT)
relationship.register(app, RELATIONSHIP_WORK)
branch.register(app, RELATIONSHIP_WORK)
whatif.register(app, RELATIONSHIP_WORK)
app.command("requalify", rich_help_panel=KAFKA_AND_OPERATIONS)(requalify)
app.command("relay", rich_help_panel=KAFKA_AND_OPERATIONS)(relay_command)
app.command("serve", rich_help_panel=KAFKA_AND_OPERATIONS)(serve)
register_consumer_commands(app)
for _info in (*app.registered_commands, *app.registered_groups):  # what cli.consumers added, without a panel
    _info.rich_help_panel = _info.rich_help_panel or KAFKA_AND_OPERATIONS


def one_line(exc: UsageError) -> str:
    """A usage mistake as one line: click's message and where to read the command's help."""
    message = " ".join(exc.format_message().split())
    where = exc.ctx.command_path if exc.ctx else "timeline"
    return f"timeline: error: {message} (see '{where} --help')"


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_gc_for_bulk_work()
    command = typer.main.get_command(app)
    try:
        code = command.main(sys.argv[1:], prog_name="timeline", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # the command's help, as asked for by giving nothing
        sys.exit(2)
    except UsageError as exc:
        err.print(one_line(exc), highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except ClickException as exc:
        err.print(f"timeline: error: {exc.format_message()}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except TimelineError as exc:
        err.print(f"timeline: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

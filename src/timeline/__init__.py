"""Event-sourced customer timelines for banks.

The public Python API, loaded on first use (``import timeline.domain.events`` stays cheap)::

    import timeline

    with timeline.open("sqlite:///branch.db") as tl:
        tl.ingest("events.jsonl")
        print(tl.state("C1", as_of="2025-06-30").tier)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_API = ("open", "Timeline", "IngestReport")

__all__ = [*_API, "__version__"]


def _version() -> str:
    """The installed distribution's version, else the one in the source tree's ``pyproject.toml``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timeline")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _API:
        return getattr(import_module("timeline.api"), name)
    raise AttributeError(f"module 'timeline' has no attribute {name!r}")

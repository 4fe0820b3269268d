"""How explanations and rejections read: instants in the policy's zone with offset, amounts grouped.

People read these texts (pages, ``explain``, ingest outcomes); JSON fields stay UTC and plain. An instant
reads as ``--as-of`` accepts it back (``2025-06-30T23:59:59+08:00``), money as ``680,000.00 CNY``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


def instant(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """``moment`` in ``zone`` with its offset, as the CLI prints instants."""
    return moment.astimezone(zone).isoformat()


def amount(value: Decimal) -> str:
    """``680000`` → ``680,000.00``."""
    return f"{value:,.2f}"


def money(value: Decimal, currency: str) -> str:
    """``680000`` → ``680,000.00 CNY``."""
    return f"{value:,.2f} {currency}"

"""How figures read on a page: amounts with separators and two decimals, instants in the policy's zone with offset."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

TIER_LABELS = {
    "mass": "普通 mass",
    "affluent": "中等净值 affluent",
    "high_net_worth": "高净值 high net worth",
    "private": "私人银行 private banking",
}
"""The labels POLICY §4.1 gives the shipped tiers; a tier of another policy reads as its id."""

STAGE_LABELS = {
    "prospect": "潜在客户 prospect",
    "churned": "流失 churned",
    "at_risk": "流失预警 at risk",
    "loyal": "忠诚客户 loyal",
    "established": "成熟客户 established",
    "new": "初级客户 new",
}
"""The labels of POLICY §4.2's stages."""


def money(value: Decimal | str | int | None) -> str:
    """``1234567.5`` → ``1,234,567.50``."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value):,.2f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def instant(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    """An instant in the policy's zone with its offset, to the second: ``2025-03-01T09:30:00+08:00``.

    (The report tables' cells come formatted from the application layer, ``report_table.instant``.)
    """
    return "—" if moment is None else moment.astimezone(zone).replace(microsecond=0).isoformat()


def local_date(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    """The date in the policy's zone, as a date picker holds it."""
    return "" if moment is None else moment.astimezone(zone).date().isoformat()


def tier_label(tier: str) -> str:
    return TIER_LABELS.get(tier, tier)


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


def policy_href(link: str) -> str:
    """``docs/POLICY.md#tier-upgrade`` (what explanations link to) → the served document's address."""
    _, _, anchor = link.partition("#")
    return f"/policy#{anchor}" if anchor else "/policy"


def numeric(cell: str) -> bool:
    """Whether a table cell is a figure (right-aligned): ``1,234.50``, ``12``, ``12.5%``."""
    return bool(_NUMERIC.fullmatch(cell))


_NUMERIC = re.compile(r"[-+]?\d[\d,]*(\.\d+)?%?")

"""Where each rule is written down: a rule code → its section of docs/POLICY.md.

An explanation names the rule that decided an answer; :func:`link` turns that name into the
address of the rule's section, so a reader can look the rule up. A code is what the engine prints
(the tier's ``upgrade after hold``, the stage's ``3. at risk (3a, 3b)``, a points ledger line's
``vest``), a ``RuleCode`` of ``timeline.domain.types`` (``3a``, ``deposit held``) or a section's
anchor itself. The tests check that every anchor here is a heading of
the document, once, and that every code the projections emit has one.
"""

from __future__ import annotations

import re

DOCUMENT = "docs/POLICY.md"

ANCHORS: frozenset[str] = frozenset(
    {
        "policy",
        "events", "events-envelope", "events-money", "events-types",
        "acceptance", "counted", "acceptance-schema", "acceptance-future", "acceptance-registration",
        "acceptance-balance", "acceptance-ids", "acceptance-redemption", "acceptance-correction",
        "acceptance-referral", "acceptance-erasure", "acceptance-duplicate",
        "time", "time-business-system", "time-zone", "time-instants", "time-known-at", "time-late",
        "time-durations",
        "projections", "aum", "tier", "tier-registered", "tier-upgrade", "tier-downgrade", "tier-one-instant",
        "lifecycle", "lifecycle-definitions", "lifecycle-1", "lifecycle-2", "lifecycle-3", "lifecycle-3a",
        "lifecycle-3b", "lifecycle-3c", "lifecycle-4", "lifecycle-5", "lifecycle-6",
        "points", "points-buckets", "points-vest", "points-pending", "points-earn", "points-referral",
        "points-birthday", "points-survey", "points-expire",
        "points-redeem", "points-overdraft", "points-available",
        "followups", "followups-open", "followups-assignment",
        "referral", "referral-qualify", "referral-final",
        "correction", "correction-void",
        "erasure", "erasure-pii", "erasure-shred",
        "explain",
        "versions", "versions-in-force", "versions-tier", "versions-lifecycle", "versions-points",
    }
)  # fmt: skip
"""Every section of the document, by its anchor (its ``<a id>``)."""

_NAMED = {
    "registered": "tier-registered",
    "upgrade after hold": "tier-upgrade",
    "downgrade after grace period": "tier-downgrade",
    "vest": "points-vest",
    "deposit held": "points-vest",
    "pending": "points-pending",
    "earn": "points-earn",
    "referral qualified": "points-referral",
    "birthday greeting": "points-birthday",
    "monthly survey": "points-survey",
    "expire": "points-expire",
    "bucket expiry": "points-expire",
    "redeem": "points-redeem",
    "redemption": "points-redeem",
    "overdraft": "points-overdraft",
}
"""Rules named in words: the tier's rules, the points ledger's kinds and the points rules behind them."""

_NUMBERED = re.compile(r"(?P<number>\d+[a-z]?)(?:\.|$)")
"""A lifecycle rule as printed: its number first (``3.``, ``3a.``, ``2. AUM 0 for 90 days``)."""


def anchor(code: str) -> str:
    """The anchor of the section of docs/POLICY.md that states the rule ``code`` names."""
    text = str(code).strip()
    if text in ANCHORS:
        return text
    named = _NAMED.get(text)
    if named is not None:
        return named
    numbered = _NUMBERED.match(text)
    if numbered and f"lifecycle-{numbered['number']}" in ANCHORS:
        return f"lifecycle-{numbered['number']}"
    raise ValueError(f"no section of {DOCUMENT} states a rule {code!r}")


def link(code: str) -> str:
    """The address of that section, relative to the repository: ``docs/POLICY.md#lifecycle-3a``."""
    return f"{DOCUMENT}#{anchor(code)}"

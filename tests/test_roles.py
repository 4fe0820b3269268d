"""Issue 11: who may do what. The role × action matrix, every cell, and the customer scope of each role."""

from __future__ import annotations

import itertools

import pytest

from timeline.domain.roles import (
    PERMISSIONS,
    SCOPED_ACTIONS,
    Action,
    Forbidden,
    InvalidPrincipal,
    OutOfScope,
    Principal,
    Role,
    allows,
    authorize,
    in_scope,
    parse_role,
)

GRANTED = {
    Role.COMPLIANCE: {
        "state",
        "explain",
        "history",
        "history_pii",
        "customers_list",
        "verify",
        "access_log",
        "erase",
        "whatif",
        "known_at_past",
    },
    Role.BRANCH_HEAD: {"state", "explain", "customers_list", "whatif"},
    Role.RM: {"state", "explain", "history", "history_pii", "customers_list", "followups"},
    Role.OPS: {"status", "verify", "metrics"},
    Role.SOURCE: {"ingest"},
}
"""The issue's table, written out: anything not listed is refused."""
AUDITOR = Principal("audit", Role.COMPLIANCE)


@pytest.mark.parametrize(("role", "action"), list(itertools.product(Role, Action)))
def test_each_role_may_do_exactly_what_the_matrix_grants(role, action):
    assert allows(role, action) == (action in GRANTED[role])


def test_the_matrix_names_every_role():
    assert set(PERMISSIONS) == set(Role)


def test_asking_about_a_past_known_at_is_compliances_alone():
    assert [r for r in Role if allows(r, Action.KNOWN_AT_PAST)] == [Role.COMPLIANCE]


def test_only_compliance_and_the_rm_see_pii():
    assert {r for r in Role if allows(r, Action.HISTORY_PII)} == {Role.COMPLIANCE, Role.RM}


def test_ops_and_sources_are_granted_no_customer_data():
    for role in (Role.OPS, Role.SOURCE):
        assert not PERMISSIONS[role] & SCOPED_ACTIONS


def test_compliance_sees_every_customer():
    assert in_scope(Principal("audit", Role.COMPLIANCE), "B9", "RM9")
    assert in_scope(Principal("audit", Role.COMPLIANCE), None, None)


def test_an_rm_sees_the_customers_whose_relationship_manager_is_theirs_now():
    rm = Principal("li", Role.RM, rm="RM1")
    assert in_scope(rm, "B1", "RM1")
    assert in_scope(rm, "B2", "RM1")
    assert not in_scope(rm, "B1", "RM2")
    assert not in_scope(rm, "B1", None)


def test_a_branch_head_sees_the_customers_of_their_branch_now():
    head = Principal("wang", Role.BRANCH_HEAD, branch="B1")
    assert in_scope(head, "B1", "RM7")
    assert not in_scope(head, "B2", "RM7")
    assert not in_scope(head, None, "RM7")


@pytest.mark.parametrize("role", [Role.OPS, Role.SOURCE])
def test_ops_and_sources_see_no_customer(role):
    assert not in_scope(Principal("svc", role), "B1", "RM1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": Role.RM}, "role rm needs the relationship manager"),
        ({"role": Role.BRANCH_HEAD}, "role branch_head needs the branch"),
        ({"role": Role.COMPLIANCE, "rm": "RM1"}, "rm applies only to role rm, not compliance"),
        ({"role": Role.RM, "rm": "RM1", "branch": "B1"}, "branch applies only to role branch_head, not rm"),
        ({"role": Role.OPS, "name": ""}, "needs a name"),
    ],
)
def test_a_principal_carries_exactly_the_scope_its_role_needs(kwargs, message):
    with pytest.raises(InvalidPrincipal, match=message):
        Principal(**{"name": "x", **kwargs})


def test_an_unknown_role_is_refused_with_the_list_of_roles():
    with pytest.raises(InvalidPrincipal, match="unknown role 'admin': one of compliance, branch_head, rm, ops, source"):
        parse_role("admin")


def test_a_forbidden_action_is_refused_whatever_the_customer():
    head = Principal("wang", Role.BRANCH_HEAD, branch="B1")
    with pytest.raises(Forbidden, match="role branch_head is not granted history"):
        authorize(head, Action.HISTORY, ("B1", "RM1"))


def test_a_past_known_at_is_forbidden_to_all_but_compliance():
    authorize(AUDITOR, Action.STATE, ("B9", "RM9"), known_at_past=True)
    with pytest.raises(Forbidden, match="a past known_at is for compliance"):
        authorize(Principal("li", Role.RM, rm="RM1"), Action.STATE, ("B1", "RM1"), known_at_past=True)


def test_a_customer_out_of_scope_is_not_revealed():
    rm = Principal("li", Role.RM, rm="RM1")
    authorize(rm, Action.HISTORY_PII, ("B1", "RM1"))
    with pytest.raises(OutOfScope, match="^no such customer$"):
        authorize(rm, Action.HISTORY_PII, ("B1", "RM2"))


def test_an_action_on_no_named_customer_is_judged_by_role_alone():
    authorize(Principal("ops", Role.OPS), Action.METRICS)
    with pytest.raises(Forbidden, match="role ops is not granted access_log"):
        authorize(Principal("ops", Role.OPS), Action.ACCESS_LOG)

"""A plan is applied (or rolled back) only against the target it was made for."""

from __future__ import annotations

import pytest

from domain.errors import ApplyRefused
from domain.plan import Plan
from domain.spec import MigrationSpec
from engine.apply import check_target

CENTRAL = {"target": "central-roles", "central": {"account": "111111111111"}}


def _plan(settings: dict) -> Plan:
    return Plan(
        migration="m",
        inventory_snapshot_id=1,
        mapping_run_id=1,
        settings=settings,
        users=[],
        actions=[],
        permission_sets=[],
        assignments=[],
        required_customer_policies=[],
        findings=[],
    )


def test_a_plan_of_the_spec_s_target_is_applied():
    check_target(MigrationSpec(name="m"), _plan({}), 1)
    central = MigrationSpec(name="m", target="central-roles", central={"account": "111111111111"})
    check_target(central, _plan(CENTRAL), 2)


@pytest.mark.parametrize(
    ("spec", "settings", "said"),
    [
        (
            {"target": "central-roles", "central": {"account": "111111111111"}},
            {},
            "made for target identity-center, but the spec now says target central-roles",
        ),
        ({}, CENTRAL, "made for target central-roles (identity account 111111111111)"),
        (
            {"target": "central-roles", "central": {"account": "222222222222"}},
            CENTRAL,
            "spec now says target central-roles (identity account 222222222222)",
        ),
    ],
)
def test_a_plan_of_another_target_or_identity_account_is_refused(spec, settings, said):
    with pytest.raises(ApplyRefused, match="nothing was changed") as refused:
        check_target(MigrationSpec(name="m", **spec), _plan(settings), 7)
    assert said in str(refused.value)

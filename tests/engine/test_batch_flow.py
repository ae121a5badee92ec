"""The batch flow run a worker runs for a step's accounts: how it ends when some failed."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import BatchFailed
from flows import account_batch


def failing_step(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """A step whose every account but the first fails, each with its reason."""
    return {a: {"errors": [] if n == 0 else [f"{a} refused"]} for n, a in enumerate(accounts)}


def test_a_batch_with_failed_accounts_ends_failed_naming_the_first_and_how_many(monkeypatch):
    monkeypatch.setitem(account_batch.STEPS, "failing", (__name__, "failing_step"))
    flow = account_batch.account_batch_flow.with_options(persist_result=False)

    # The engine raises a Failed run's data (as `python -m prefect.engine` does on a worker):
    # ours, with the run's message; a dict there was a TypeError in every failed batch's log.
    with pytest.raises(BatchFailed) as failed:
        flow("spec.toml", "failing", "apply:1:disable", ["111", "222", "333"], {})
    assert str(failed.value) == "account 222: 222 refused (and 1 more)"

    state = flow("spec.toml", "failing", "apply:1:disable", ["111", "222"], {}, return_state=True)
    assert state.is_failed() and state.message == "account 222: 222 refused"


def named_failing_step(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """A step whose reason names its account already, as an unreachable account's does."""
    return {a: {"error": f"account {a}: cannot assume role OrganizationAccountAccessRole"}
            for a in accounts}  # fmt: skip


def test_a_reason_that_names_its_account_does_not_name_it_twice(monkeypatch):
    monkeypatch.setitem(account_batch.STEPS, "named", (__name__, "named_failing_step"))
    flow = account_batch.account_batch_flow.with_options(persist_result=False)

    state = flow("spec.toml", "named", "inventory:1", ["111"], {}, return_state=True)
    assert state.message == "account 111: cannot assume role OrganizationAccountAccessRole"

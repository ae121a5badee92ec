"""The heartbeat environment `iamc deploy` gives the deployments, and Prefect's floor for it."""

from __future__ import annotations

import pydantic
import pytest

from iamc.automations import HEARTBEAT_SETTING, AutomationNames, heartbeat_env


def test_heartbeat_env_asks_prefect_for_no_less_than_it_accepts():
    from prefect.settings.models.flows import FlowsSettings

    assert heartbeat_env(45) == {HEARTBEAT_SETTING: "45"}
    assert heartbeat_env(5) == {HEARTBEAT_SETTING: "30"}
    accepted = FlowsSettings(heartbeat_frequency=int(heartbeat_env(5)[HEARTBEAT_SETTING]))
    assert accepted.heartbeat_frequency == 30
    # What a flow run's process would do with the spec's value as it is.
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 30"):
        FlowsSettings(heartbeat_frequency=5)


def test_each_migration_has_its_own_automations():
    ours, theirs = AutomationNames.of("wave-a"), AutomationNames.of("wave-b")
    assert ours.paused == "iamc wave-a: run paused for approval"
    assert len({ours.paused, ours.failed, ours.silent, theirs.paused, theirs.failed}) == 5

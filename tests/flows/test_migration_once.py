"""A flow run loads its spec and opens its state DB once, however many of its parts need them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from engine import migration as migration_module
from flows.apply import apply_flow


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counted: Counter[str] = Counter()
    real_load, real_open = migration_module.load_spec, migration_module.Store.open

    def load_spec(path: Any) -> Any:
        counted["spec"] += 1
        return real_load(path)

    def open_store(url: str) -> Any:
        counted["store"] += 1
        return real_open(url)

    monkeypatch.setattr(migration_module, "load_spec", load_spec)
    monkeypatch.setattr(migration_module.Store, "open", staticmethod(open_store))
    return counted


def test_an_apply_flow_run_loads_its_spec_once(clean, kit, tmp_path, loads):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    loads.clear()  # writing the plan opened it too: only the flow run is counted
    summary = apply_flow(str(spec), None, "provision")  # the latest plan: looked up as well
    assert summary["plan_id"] == plan_id and summary["failed"] == 0
    # The work, the plan id lookup, the step's artifact and the waves table all use it.
    assert loads == {"spec": 1, "store": 1}

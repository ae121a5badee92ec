"""Imports with the cyclic GC paused: collector back on after, new modules frozen."""

from __future__ import annotations

import gc
import sys

import pytest

from engine.prefect_runtime import imports_without_gc


@pytest.fixture
def collector():
    """The collector on and nothing frozen before; as it was after."""
    was_enabled = gc.isenabled()
    gc.enable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if not was_enabled:
        gc.disable()


def test_imports_run_with_the_collector_paused_and_are_frozen(collector):
    sys.modules.pop("json.tool", None)
    with imports_without_gc():
        assert not gc.isenabled()
        import json.tool  # noqa: F401 - a module not imported yet
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_a_block_that_imports_nothing_new_freezes_nothing(collector):
    with imports_without_gc():
        import json  # noqa: F401 - already imported
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_collector_the_caller_paused_stays_paused(collector):
    gc.disable()
    with imports_without_gc():
        pass
    assert not gc.isenabled()
    gc.enable()


def test_the_collector_is_back_on_after_a_failed_import(collector):
    with pytest.raises(ImportError), imports_without_gc():
        import iamc_no_such_module  # noqa: F401
    assert gc.isenabled()

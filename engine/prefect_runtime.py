"""How a short-lived process (a CLI step command) runs flows: nothing Prefect does for nobody.

The module needs only the standard library; the switches import Prefect, so call them only
where a flow is about to run, never from a read-only command.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)

_MARK = "_iamc_switched"
# Values FastAPI's jsonable_encoder returns unchanged (exact types: a subclass may not be).
_PLAIN = (str, int, float, bool, type(None))


def prepare_flow_runs() -> None:
    """The switches below, for a command that runs a flow and exits."""
    end_flow_runs_without_waiting()
    serialize_plain_parameters_without_fastapi()
    keep_old_objects_frozen()


@contextmanager
def subflow_runs_tagged(tag: str) -> Iterator[None]:
    """In a flow run: the subflow runs it starts carry ``tag`` (Prefect gives a subflow run the
    tags in context, not its parent's; ``iamc.automations`` finds a dead run's subflow runs by
    it). Elsewhere nothing: a command that has not imported Prefect is not in a flow run, and
    does not import it."""
    context = sys.modules.get("prefect.context")
    if context is None or context.FlowRunContext.get() is None:
        yield
        return
    from prefect import tags

    with tags(tag):
        yield


def end_flow_runs_without_waiting() -> bool:
    """Let a flow run end as soon as its final state is recorded, heartbeats kept.

    Prefect's flow-run heartbeat thread sleeps in one-second steps, and the synchronous flow
    engine joins it when the run ends, so every run ended 0-1 s after its final state was set,
    waiting for the thread to wake up (Prefect 3.9, ``flow_engine._send_heartbeats``). The
    asynchronous engine passes ``join_on_exit=False`` instead: the thread is a daemon that
    returns at its next wake-up without sending anything (it sends no heartbeat once the
    run's state is final). We do the same for synchronous runs. Idempotent.

    Returns:
        True if flow runs now end without waiting; False if this Prefect has no such
        switch (then they wait as before, and a test says so).
    """
    from prefect import flow_engine

    current: Callable[..., Any] | None = getattr(flow_engine, "_send_heartbeats", None)
    if current is None:
        log.debug("Prefect has no flow_engine._send_heartbeats: heartbeats joined as before")
        return False
    if getattr(current, _MARK, False):
        return True
    if "join_on_exit" not in inspect.signature(current).parameters:
        log.debug("Prefect's _send_heartbeats takes no join_on_exit: joined as before")
        return False

    @functools.wraps(current)
    def heartbeats_not_joined(*args: Any, **kwargs: Any) -> Any:
        kwargs["join_on_exit"] = False
        return current(*args, **kwargs)

    setattr(heartbeats_not_joined, _MARK, True)
    flow_engine._send_heartbeats = heartbeats_not_joined  # type: ignore[attr-defined]
    return True


def serialize_plain_parameters_without_fastapi() -> bool:
    """Record a flow run's plain parameters without importing FastAPI.

    Prefect stores a new flow run's parameters through FastAPI's ``jsonable_encoder``
    (``Flow.serialize_parameters``), and importing FastAPI for it costs a step command about
    0.1-0.3 s before the run is even created. Our flows take strings, numbers, booleans, None
    and string enums, which that encoder returns unchanged (an enum as its value): those are
    recorded as they are; a flow given anything else goes through Prefect's own code. Idempotent.

    Returns:
        True (the switch is in place).
    """
    from prefect.flows import Flow

    current: Callable[..., dict[str, Any]] = Flow.serialize_parameters
    if getattr(current, _MARK, False):
        return True

    @functools.wraps(current)
    def serialize(self: Flow[Any, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for key, value in parameters.items():
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, str):
                value = str.__str__(value)  # a str subclass (domain.stages.Stage) as plain text
            if type(value) not in _PLAIN:
                return current(self, parameters)
            plain[key] = value
        return plain

    setattr(serialize, _MARK, True)
    Flow.serialize_parameters = serialize  # type: ignore[method-assign]
    return True


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Import the block's modules with the cyclic garbage collector paused, then freeze them.

    A step command imports Prefect, pydantic, SQLAlchemy and boto3: over a million objects,
    all alive until the process ends. With the collector on, those imports trigger hundreds of
    collections that walk the growing heap and free nothing (about 0.3 s of a step command's
    CPU time). When the block imported something, ``gc.freeze()`` then moves everything
    allocated so far to the permanent generation, so the flow's own full collections skip it
    too (Python docs, ``gc.freeze``). In a process that already ran flows (the demo) that also
    keeps whatever cyclic garbage they left uncollected; a block that imports nothing new
    freezes nothing. A collector the caller paused stays paused.
    """
    if not gc.isenabled():
        yield
        return
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules:
            gc.freeze()
        gc.enable()


# Whether old_objects_frozen leaves what it froze frozen (see keep_old_objects_frozen).
_keep_frozen = False


def keep_old_objects_frozen() -> None:
    """Let :func:`old_objects_frozen` leave frozen what it froze, for a process that runs
    its flow and exits.

    Such a process (a step command) froze what it imported (:func:`imports_without_gc`);
    ``gc.unfreeze`` would hand that whole heap back to the collector, and asking
    ``gc.get_freeze_count()`` whether anything was frozen walks that heap (~60 ms for a
    step command's). A process that runs flow after flow unfreezes after each, so garbage
    alive when a flow starts is not kept for good.
    """
    global _keep_frozen
    _keep_frozen = True


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """Leave what exists before a flow's work (Prefect, botocore's models, the spec) out of
    the cycle collector's passes while the work runs; what the work allocates is collected
    as usual (``gc.freeze``).

    A generation-2 pass walks the whole heap with every thread stopped, 0.05-0.25 s a pass in
    a step command, and an inventory's allocations triggered one or more a run. Unfrozen
    afterwards unless :func:`keep_old_objects_frozen` was called.
    """
    gc.freeze()
    try:
        yield
    finally:
        if not _keep_frozen:
            gc.unfreeze()


def end_what_a_dead_attempt_left() -> int:
    """On a Retry of a flow run whose process died: end the task runs it left Running.

    A subflow's call is a task run of its parent; Prefect reattaches a new call to the subflow
    run of a task run still Running with the same key (``load_subflow_run``), and runs that
    subflow again *with its old parameters*: after a worker died during the disable stage and
    the run was retried, the delete step reran the disable run's resume. Their process is gone:
    each is marked Crashed (and its subflow run with it), so every call of this attempt starts
    its own subflow run. A first attempt has nothing to end.

    Returns:
        How many task runs were ended.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentTaskRunId,
        TaskRunFilter,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.filters import TaskRunFilterState as StateFilter
    from prefect.runtime import flow_run
    from prefect.states import Crashed

    if not flow_run.id or (flow_run.run_count or 1) <= 1:
        return 0
    live = StateFilter(type=TaskRunFilterStateType(any_=["RUNNING", "PENDING"]))
    message = "its process died; the flow run was retried and runs it again"
    with get_client(sync_client=True) as client:
        left = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
            task_run_filter=TaskRunFilter(state=live),
        )
        for task_run in left:
            client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
        if left:
            for child in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in left])
                )
            ):
                if child.state is not None and not child.state.is_final():
                    client.set_flow_run_state(child.id, Crashed(message=message), force=True)
    log.info("ended %d task run(s) a dead attempt left running", len(left))
    return len(left)

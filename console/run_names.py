"""Flow runs named by what they do (``apply provision · plan 1 · run 11``), not Prefect's
random names (``imposing-chamois``), so the UI's run list reads like the run ids every
message and table quotes.

A runbook flow is named from its parameters when it starts (:func:`step_run_name`, its
``flow_run_name``); once the engine opens the state database's run (``engine.runs.open_run``
emits ``run-opened``), :class:`RunNamer` renames the flow run after it. A step whose result
carries a ``run_id`` gets it added when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SEPARATOR = " · "


def start_name(step: str, params: dict[str, Any]) -> str:
    """What a flow run is called from its parameters alone (``apply disable · plan 3``)."""
    head = f"{step} {params['stage']}" if params.get("stage") else step
    parts = [head]
    if step == "rollback" and params.get("run_id") is not None:
        parts.append(f"undoes run {params['run_id']}")
    if "plan_id" in params:
        plan_id = params["plan_id"]
        parts.append("latest plan" if plan_id is None else f"plan {plan_id}")
    if params.get("wave"):
        parts.append(f"wave {params['wave']}")
    if params.get("resume_run_id") is not None:
        parts.append(f"run {params['resume_run_id']}")
    if params.get("user"):
        parts.append(str(params["user"]))
    if params.get("dry_run"):
        parts.append("dry run")
    return SEPARATOR.join(parts)


def opened_name(data: dict[str, Any]) -> str:
    """What a flow run is called once its state-database run is open (a ``run-opened``
    event): ``apply provision · plan 1 · run 11``, ``rollback provision · plan 1 · run 12 ·
    undoes run 11``."""
    head = " ".join(str(data[k]) for k in ("kind", "stage") if data.get(k))
    parts = [head or "run"]
    if data.get("plan_id") is not None:
        parts.append(f"plan {data['plan_id']}")
    parts.append(f"run {data['run_id']}")
    if data.get("of_run") is not None:
        parts.append(f"undoes run {data['of_run']}")
    if data.get("user"):
        parts.append(str(data["user"]))
    return SEPARATOR.join(parts)


def step_run_name(step: str) -> Callable[[], str]:
    """A ``flow_run_name`` for ``@flow``: the step and what its parameters say."""

    def name() -> str:
        from prefect.runtime import flow_run

        try:
            return start_name(step, dict(flow_run.parameters or {}))
        except Exception:  # a name is a courtesy: it never stops a run from starting
            log.debug("flow run name of %s not made", step, exc_info=True)
            return step

    name.__qualname__ = name.__name__ = f"{step.replace('-', '_')}_run_name"
    return name


def _current() -> Any:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return None if ctx is None or ctx.flow_run is None else ctx.flow_run


class RunNamer:
    """Renames the flow run it was made in when that run's state-database run opens.

    Events from a subflow's run (another flow run in this process) are left to its own namer.
    """

    def __init__(self) -> None:
        current = _current()
        self.flow_run_id = None if current is None else current.id
        self.renamed = False

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        if event != "run-opened" or data.get("run_id") is None:
            return
        current = _current()
        if current is None or current.id != self.flow_run_id:
            return
        name = opened_name(data)
        if name == current.name:  # a Retry of a run already named after it
            self.renamed = True
            return
        self._rename(current, name)

    def finish(self, result: Any) -> None:
        """Add the run id a step's result names, unless the run was named after it already."""
        current = _current()
        if self.renamed or current is None or current.id != self.flow_run_id:
            return
        if isinstance(result, dict) and isinstance(result.get("run_id"), int):
            name = current.name or ""
            if f"run {result['run_id']}" not in name.split(SEPARATOR):
                self._rename(current, f"{name}{SEPARATOR}run {result['run_id']}".lstrip(" ·"))

    def _rename(self, flow_run: Any, name: str) -> None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_name(flow_run.id, name)
        except Exception:  # a name is a courtesy: it never changes how a run ends
            log.debug("flow run %s not renamed to %r", flow_run.id, name, exc_info=True)
            return
        flow_run.name = name
        self.renamed = True

"""The Prefect UI as the operator's console: run logs, progress, step artifacts and Failed states.

Every runbook flow is wrapped by :func:`operator_step` (under ``@flow``), which

- writes the story of the run to the run's logs at INFO (``get_run_logger``);
- keeps a progress artifact up to date while the flow's work emits progress events;
- publishes the step's result as an artifact keyed per migration (so it versions run after
  run) once the flow ends, successfully or not;
- turns an expected operator error (:class:`domain.errors.IamcError`) into one Failed state
  whose message says what happened and what to do next, in the UI's terms and the CLI's, with
  no traceback. Called outside Prefect's API (the CLI) the same error is raised as before.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from console.progress import ProgressArtifact, ProgressEvents
from console.run_names import RunNamer
from console.tables import fitted_table
from domain.errors import ApplyFailed, IamcError
from domain.progress import listening

log = logging.getLogger(__name__)
# "<step>: own work N s (flow body), artifacts N s" per step run, at DEBUG: what the command
# spent on its AWS and database work, apart from Prefect's and the interpreter's share
# (IAMC_TIMINGS=1 shows it on the console; `python -m bench commands` reads it).
timing_log = logging.getLogger("flows.timing")

F = TypeVar("F", bound=Callable[..., Any])

# The runbook in order: deployments are numbered by it, so the UI lists them as a runbook.
RUNBOOK = (
    "centralize",
    "inventory",
    "mapping",
    "key-scan",
    "workloads",
    "usage",
    "plan",
    "plan-and-approve",
    "apply",
    "verify",
    "notify",
    "bake-watch",
    "rollback",
    "restore",
    "drift",
)


def deployment_name(flow_name: str, migration: str) -> str:
    """``08 apply (acme-2026q4)``: the step's number in the runbook, zero-padded so the UI's
    list (sorted as text) reads in runbook order, its flow, the migration."""
    return f"{RUNBOOK.index(flow_name):02d} {flow_name} ({migration})"


def artifact_key(migration: str, step: str, wave: str | None = None) -> str:
    """``<migration>-<step>[-<wave>]``, the one key scheme of every artifact: lowercase
    letters, digits and dashes only, so each step's result versions per migration (and wave).

    ``step`` is the runbook step as operators call it (``inventory``, ``plan``,
    ``apply-provision``, ``rollback-disable``, ``bake-watch``...).
    """
    raw = "-".join(part for part in (migration, step, wave) if part).lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")


# -- no tracebacks for what the Failed state's message already says --------------------------


class _OperatorErrorsWithoutTraceback(logging.Filter):
    """Keep expected errors out of the run logs as tracebacks.

    Prefect's engine re-raises a failed flow run's exception at the top of the run's process
    and logs it with its traceback ("Engine execution exited with unexpected exception"); for
    an operator error the Failed state's message already says what happened and what to do,
    so that record is dropped. A task that returns a Failed state is logged with an empty
    ``exc_info`` (``NoneType: None``); that is stripped. Unexpected errors keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        error = record.exc_info[1]
        if error is None:
            record.exc_info, record.exc_text = None, None
            return True
        if isinstance(error, IamcError):
            if "Engine execution exited" in record.getMessage():
                return False
            record.exc_info, record.exc_text = None, None
        return True


_QUIET = _OperatorErrorsWithoutTraceback()
for _name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
    if _QUIET not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_QUIET)


# -- where we run ---------------------------------------------------------------------------


def in_flow_run() -> bool:
    """True inside a Prefect flow or task run (artifacts and run logs have somewhere to go)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (its lines show in the UI's Logs tab), or this module's outside a run."""
    if not in_flow_run():
        return log
    from prefect import get_run_logger

    return get_run_logger()


def flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def flow_run_url() -> str | None:
    """This flow run's page in the UI, when the API has a UI."""
    from prefect.runtime import flow_run

    return flow_run.ui_url if flow_run.id else None


def artifact_url(artifact_id: UUID | None) -> str | None:
    """An artifact's page in the UI (``PREFECT_UI_URL``), or None."""
    if artifact_id is None:
        return None
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/artifacts/artifact/{artifact_id}" if base else None


# -- artifacts ------------------------------------------------------------------------------


def publish_table(
    key: str, rows: list[dict[str, Any]], description: str, more_hint: str | None = None
) -> UUID | None:
    """A table artifact (a new version of ``key``), only inside a flow run.

    Its columns fit the UI: a long cell is cut and written whole in the description
    (:func:`console.tables.fitted_table`); ``more_hint`` says where the rest is when there
    are more cut cells than the description lists.
    """
    if not in_flow_run():
        return None
    from prefect.artifacts import create_table_artifact

    table, text = fitted_table(rows, description, more_hint)
    return create_table_artifact(table=table, key=key, description=text)


def publish_markdown(key: str, markdown: str, description: str) -> UUID | None:
    """A Markdown artifact (a new version of ``key``), only inside a flow run."""
    if not in_flow_run():
        return None
    from prefect.artifacts import create_markdown_artifact

    return create_markdown_artifact(markdown=markdown, key=key, description=description)


@contextmanager
def progress_artifact(key: str, what: str, events: ProgressEvents) -> Iterator[None]:
    """Keep a progress artifact up to date while the block runs (inside a flow run only)."""
    if not in_flow_run():
        yield
        return
    progress = ProgressArtifact(key, what, events)
    try:
        progress.start()
    except Exception:
        log.debug("progress artifact could not be created", exc_info=True)
        yield
        return
    stopped: str | None = "the run failed (its state message says why)"
    try:
        with listening(progress.on_event):
            yield
        stopped = None
    finally:
        progress.finish(stopped)


# -- failures an operator can act on --------------------------------------------------------

_RETRY_THAT_RUN = "press Retry on the flow run that started run"

# CLI commands named in our errors, and what does the same in the UI.
_CLI_IN_UI: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]], ...] = (
    (
        re.compile(r"iamc inventory\b"),
        lambda _, m: f"run the deployment '{deployment_name('inventory', m)}'",
    ),
    (
        re.compile(r"iamc map\b"),
        lambda _, m: f"run the deployment '{deployment_name('mapping', m)}'",
    ),
    (
        re.compile(r"iamc plan(?! show| verify)\b"),
        lambda _, m: f"run the deployment '{deployment_name('plan', m)}'",
    ),
    (
        re.compile(r"iamc approve\b"),
        lambda _, m: (
            f"run the deployment '{deployment_name('plan-and-approve', m)}' and "
            "approve in its Resume form"
        ),
    ),
    (
        re.compile(r"iamc resume (\d+)"),
        lambda match, _: (
            f"{_RETRY_THAT_RUN} {match.group(1)}: it "
            "continues where it stopped, done work is not repeated"
        ),
    ),
    (
        re.compile(r"iamc status (\d+)"),
        lambda match, _: f"open the per-account table of run {match.group(1)} (Artifacts tab)",
    ),
    (
        re.compile(r"iamc rollback\b"),
        lambda _, m: f"run the deployment '{deployment_name('rollback', m)}'",
    ),
)


def ui_next_steps(message: str, migration: str) -> list[str]:
    """What the CLI commands a message names are called in the Prefect UI, in order, once."""
    found: list[tuple[int, str]] = []
    for pattern, say in _CLI_IN_UI:
        for match in pattern.finditer(message):
            found.append((match.start(), say(match, migration)))
    seen: list[str] = []
    for _, text in sorted(found):
        if text not in seen:
            seen.append(text)
    return seen


def operator_message(
    err: IamcError, step: str, migration: str | None, spec_path: str | None
) -> str:
    """The Failed state's message: what happened, then what to do, in the UI and in a shell."""
    text = str(err)
    migration = migration or "?"
    ui = ui_next_steps(text, migration)
    if isinstance(err, ApplyFailed) or (step in ("apply", "rollback", "centralize") and not ui):
        # Retry on this flow run continues the run the message names: said once, not again
        # as "press Retry on the flow run that started run N".
        ui = [line for line in ui if not line.startswith(_RETRY_THAT_RUN)]
        ui.insert(
            0,
            "fix the cause named above, then press Retry on this flow run: it continues "
            "where it stopped, done work is not repeated",
        )
    if not ui:
        ui = ["fix the cause named above, then press Retry on this flow run"]
    cli = f"iamc runs -c {spec_path}" if spec_path else "iamc runs -c SPEC"
    return (
        f"{step}: {text}\n\nNext, in the Prefect UI: " + "; ".join(ui) + f".\nFrom a shell: the "
        f"commands named above, and '{cli}' for every run of this migration."
    )


def failed_state(err: IamcError, step: str, migration: str | None, spec_path: str | None) -> Any:
    """A Failed state carrying ``err``: one message, no traceback; a direct call re-raises it."""
    from prefect.states import Failed

    return Failed(message=operator_message(err, step, migration, spec_path), data=err)


# -- the wrapper every runbook flow wears ----------------------------------------------------

Publisher = Callable[[str, dict[str, Any], Any], None]


def operator_step(
    step: str,
    *,
    progress: ProgressEvents | None = None,
    publish: Publisher | None = None,
) -> Callable[[F], F]:
    """Wrap a flow function (put it under ``@flow``) so the UI tells an operator the story.

    Args:
        step: The runbook step, as operators call it (``inventory``, ``apply``...).
        progress: Events that drive a progress artifact while the flow runs.
        publish: ``publish(spec_path, arguments, result_or_error)`` publishes the step's
            artifact when the flow ends, successfully or with an operator error.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            spec_path = arguments.get("spec_path")
            # The flow run's migration, opened once: the work, its artifacts and its failure
            # message all use it (engine.migration hands the open one on).
            with contextlib.ExitStack() as opened:
                return _run_step(fn, args, kwargs, arguments, spec_path, opened)

        def _run_step(
            fn: F,
            args: Any,
            kwargs: Any,
            arguments: dict[str, Any],
            spec_path: str | None,
            opened: contextlib.ExitStack,
        ) -> Any:
            from engine.migration import Migration  # the state DB, once a flow runs

            logger = run_logger()
            migration = None
            namer = RunNamer() if in_flow_run() else None
            started = time.perf_counter()  # the step's own work: its migration opened first
            try:
                if spec_path:
                    migration = opened.enter_context(Migration.open(spec_path)).spec.name
                with _watched(step, migration, arguments, progress, namer):
                    result = fn(*args, **kwargs)
            except IamcError as err:
                if not in_flow_run():
                    raise
                logger.error("%s stopped: %s", step, str(err).splitlines()[0])
                _publish(publish, spec_path, arguments, err, logger)
                return failed_state(err, step, migration, spec_path)
            own = time.perf_counter() - started
            if namer is not None:
                namer.finish(result)
            if isinstance(result, dict):
                logger.info("%s finished: %s", step, _short(result))
            _publish(publish, spec_path, arguments, result, logger)
            timing_log.debug(
                "%s: own work %.3f s (flow body), artifacts %.3f s",
                step,
                own,
                time.perf_counter() - started - own,
            )
            return result

        # Prefect validates parameters against the wrapper's annotations: give it the
        # resolved types, not strings that only resolve in the flow's own module.
        wrapper.__annotations__ = typing.get_type_hints(fn)
        wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _progress_key(migration: str, step: str, arguments: dict[str, Any]) -> str:
    """``acme-apply-disable-progress``: the step (and stage) whose work the bar follows."""
    stage = arguments.get("stage")
    return artifact_key(
        migration, "-".join(p for p in (step, stage and str(stage), "progress") if p)
    )


def _short(summary: dict[str, Any]) -> str:
    """A summary's plain numbers and words, for one log line."""
    parts = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in summary.items()
        if isinstance(value, int | str) and not isinstance(value, bool) and len(str(value)) < 40
    ]
    return ", ".join(parts) or "done"


@contextmanager
def _watched(
    step: str,
    migration: str | None,
    arguments: dict[str, Any],
    progress: ProgressEvents | None,
    namer: RunNamer | None,
) -> Iterator[None]:
    """While a step works: its progress artifact, and its flow run renamed after its run."""
    with contextlib.ExitStack() as stack:
        if progress is not None and migration:
            key = _progress_key(migration, step, arguments)
            stack.enter_context(progress_artifact(key, f"{step} of {migration}", progress))
        if namer is not None:
            stack.enter_context(listening(namer.on_event))
        yield


def _publish(
    publish: Publisher | None,
    spec_path: str | None,
    arguments: dict[str, Any],
    outcome: Any,
    logger: Any,
) -> None:
    if publish is None or spec_path is None or not in_flow_run():
        return
    try:
        publish(str(spec_path), arguments, outcome)
    except Exception as err:  # an artifact is a courtesy: it never changes how a run ends
        logger.warning("could not publish the step's artifact: %s", err)


def resolve_plan_id(spec_path: str, plan_id: int | None) -> int:
    """``plan_id``, or the migration's latest plan when it is empty.

    Raises:
        PlanError: No plan yet; the message names the deployment and the command that make one.
    """
    from domain.errors import PlanError

    # The state DB (SQLAlchemy) is imported only when a plan id must be looked up.
    from engine.migration import Migration
    from engine.progress import latest_plan_id

    if plan_id is not None:
        return plan_id
    with Migration.open(spec_path) as mig:
        latest = latest_plan_id(mig)
        if latest is None:
            raise PlanError(
                f"no plan yet for migration {mig.spec.name!r}, and plan_id was left "
                f"empty: compute one first with '{mig.hint('plan')}'"
            )
    run_logger().info("plan_id left empty: taking the latest plan, %d", latest)
    return latest

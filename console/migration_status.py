"""The migration status artifact: every wave's accounts by stage, the CIS 1.21 verdicts, the next
action with the deployment to press, and a link to every step's table.

``centralize`` publishes it on its own run, under one key per migration
(``artifact_key(migration, "status")``), after every step, so the UI's latest version is where
the migration stands. Read from the state store (``engine.wave_progress``, ``engine.runbook``);
the links are the latest version of each step's artifact.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from console.operator import artifact_key, artifact_url, deployment_name, publish_markdown
from domain import stages as registry
from engine.migration import Migration
from engine.progress import MigrationProgress, migration_progress
from engine.runbook import (
    DONE,
    FAILED,
    NEXT,
    StepView,
    approval_stage,
    is_stage,
    verdict_line,
    wave_steps,
)
from engine.wave_progress import PENDING, WaveProgress, waves_progress

log = logging.getLogger(__name__)

STATUS = "status"
# Which deployment carries out a step (the step's own flow).
_DEPLOYMENT = {
    "inventory": "inventory",
    "final inventory": "inventory",
    "mapping": "mapping",
    "key-scan": "key-scan",
    "workloads": "workloads",
    "plan": "plan",
    "verify": "verify",
    "notify": "notify",
    "bake": "bake-watch",
}


def status_key(migration: str) -> str:
    """The one key of the migration's status artifact."""
    return artifact_key(migration, STATUS)


def step_artifact_keys(migration: str, step: str, wave: str | None) -> list[str]:
    """The key a step's table is published under (``<migration>-<step>[-<wave>]``), as a list."""
    stage = approval_stage(step)
    if stage is not None:
        key = artifact_key(migration, "plan-approval", wave)
    elif is_stage(step):
        key = artifact_key(migration, f"apply-{step}", wave)
    elif step in ("inventory", "final inventory", "verdict"):
        key = artifact_key(migration, "inventory")
    elif step in ("mapping", "key-scan", "workloads"):
        key = artifact_key(migration, step)
    elif step == "bake":
        key = artifact_key(migration, "bake-watch")
    else:  # plan, verify, notify
        key = artifact_key(migration, step, wave)
    return [key]


def latest_artifacts(keys: list[str]) -> dict[str, UUID]:
    """Key -> id of its latest version, for the keys that exist (one API read)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys)),
            limit=len(keys) or 1,
        )
    return {a.key: a.latest_id for a in found if a.key}


def _link(migration: str, step: str, wave: str | None, known: dict[str, UUID]) -> str:
    for key in step_artifact_keys(migration, step, wave):
        if key in known:
            url = artifact_url(known[key])
            return f"[{key}]({url})" if url else f"`{key}`"
    return ""


def next_action(migration: str, w: WaveProgress, step: StepView, paused_here: bool) -> str:
    """What to do for the wave's next step, naming the deployment to press."""
    central = f"'{deployment_name('centralize', migration)}'"
    wave_param = f" with wave {w.wave}" if w.wave else ""
    again = f"{central}{wave_param} continues here"
    stage = approval_stage(step.name)
    if step.name == "verdict":
        return "read the verdict: the wave is done"
    if stage is not None:
        where = (
            "press **Resume** on this paused run and fill in the form"
            if paused_here
            else f"{again} and pauses for it"
        )
        return (
            f"the change board decides on stage {stage} of plan {w.plan_id}: {where} (or "
            f"'{deployment_name('plan-and-approve', migration)}' with plan_id {w.plan_id})"
        )
    if step.name == "bake":
        held = "waits while users are baking or in use; " if paused_here else ""
        return (
            f"{held}'{deployment_name('bake-watch', migration)}' (daily) resumes this run once "
            "every disabled user is ready, or press Resume; a user in use needs a decision "
            f"(iamc bake decide) or a re-enable; or {again}"
        )
    if is_stage(step.name):
        apply = f"'{deployment_name('apply', migration)}' (plan_id {w.plan_id}, stage {step.name})"
        if step.state == FAILED:
            return (
                f"{step.detail}: fix the cause named in its table, then press Retry on the run "
                f"that failed, or {again}, or {apply} with resume_run_id {step.run_id}"
            )
        return f"{again}, or {apply}"
    flow = _DEPLOYMENT.get(step.name, step.name)
    target = f"'{deployment_name(flow, migration)}'"
    if step.name == "plan" and w.wave:
        target += f" with wave {w.wave}"
    return f"{again}, or {target}"


def _cell(w: WaveProgress, stage: str, account: str) -> str:
    state = w.stage(stage)
    here = state.accounts.get(account)
    if here is None:
        return "—"
    run = f" · run {state.run_id}" if state.run_id else ""
    if here.status == "failed":
        reason = (here.error or "").replace("|", "\\|").replace("\n", " ")
        return f"**failed**{run}: {reason[:120]}"
    if here.status == PENDING and state.resumable:
        return f"pending · run {state.run_id} {state.status}"
    if here.status == PENDING:
        return f"pending ({here.done}/{here.actions})" if here.done else "pending"
    return f"done{run}"


def _accounts_table(w: WaveProgress) -> list[str]:
    stages = registry.stage_names()
    lines = [
        "| account | name | " + " | ".join(stages) + " | CIS 1.21 |",
        "|---|---|" + "---|" * len(stages) + "---|",
    ]
    extra = sorted(
        {a for s in w.stages.values() for a in s.accounts if a not in w.accounts}
    )  # the management account's permission sets
    for account in [*w.accounts, *extra]:
        cis = w.cis.get(account, {})
        verdict = cis.get("verdict", "")
        if cis.get("why"):
            verdict += f": {cis['why']}"
        cells = [_cell(w, s, account) for s in stages]
        name = cis.get("name", "permission sets" if account == "management" else "")
        lines.append(f"| {account} | {name} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def _steps_table(migration: str, w: WaveProgress, steps: list[StepView], known: dict) -> list[str]:
    lines = ["| # | step | state | detail | run | table |", "|---|---|---|---|---|---|"]
    for step in steps:
        state = {DONE: "done", FAILED: "**failed**", NEXT: "**next**"}.get(step.state, "pending")
        detail = step.detail.replace("|", "\\|").replace("\n", " ")
        run = str(step.run_id or "")
        link = _link(migration, step.name, w.wave, known)
        lines.append(f"| {step.number} | {step.name} | {state} | {detail} | {run} | {link} |")
    return lines


def status_markdown(
    migration: str,
    m: MigrationProgress,
    waves: list[tuple[WaveProgress, list[StepView]]],
    known: dict[str, UUID],
    now: str | None = None,
    paused: tuple[str | None, str] | None = None,
) -> str:
    """The artifact's Markdown.

    Args:
        waves: Each wave's progress and steps, in order.
        known: Artifact key -> latest id (:func:`latest_artifacts`).
        now: When (ISO 8601); default the current time.
        paused: (wave, step) at which the publishing run is paused, if it is.
    """
    now = now or datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"# Migration {migration}: status",
        "",
        f"As the state database records it at {now}. Waves in order; every step's table is "
        "linked in its wave's step list.",
        "",
        "| wave | accounts | plan | steps done | next | what to press |",
        "|---|---|---|---|---|---|",
    ]
    sections: list[str] = []
    for w, steps in waves:
        done = sum(1 for s in steps if s.state == DONE)
        upcoming = next((s for s in steps if s.state in (NEXT, FAILED)), None)
        here = paused is not None and paused[0] == w.wave
        if upcoming is None:
            step_text, action = "—", verdict_line(w)
        else:
            step_text = upcoming.name + (" (failed)" if upcoming.state == FAILED else "")
            action = next_action(migration, w, upcoming, here and paused[1] == upcoming.name)
        lines.append(
            f"| {w.label} | {len(w.accounts)} | {w.plan_id or '—'} | {done} of {len(steps)} | "
            f"{step_text} | {action} |"
        )
        sections += [
            "",
            f"## {w.label}" + (f" · plan {w.plan_id}" if w.plan_id else ""),
            "",
            *_accounts_table(w),
            "",
            *_steps_table(migration, w, steps, known),
        ]
    return "\n".join(lines + sections) + "\n"


def migration_status(mig: Migration) -> tuple[MigrationProgress, list[tuple[WaveProgress, Any]]]:
    """Where the migration stands: its progress, and each wave's progress and steps."""
    m = migration_progress(mig)
    waves = waves_progress(mig, m)
    return m, [(w, wave_steps(m, w, mig.spec)) for w in waves]


def publish_status(mig: Migration, paused: tuple[str | None, str] | None = None) -> UUID | None:
    """Publish the status artifact on the current run (a new version of its key).

    Never fails the run: a courtesy that logs why it could not be published.
    """
    try:
        migration = mig.spec.name
        m, waves = migration_status(mig)
        keys = [
            k
            for w, steps in waves
            for s in steps
            for k in step_artifact_keys(migration, s.name, w.wave)
        ]
        known = latest_artifacts(list(dict.fromkeys(keys)))
        markdown = status_markdown(migration, m, waves, known, paused=paused)
        summary = "; ".join(
            f"{w.label}: {sum(1 for s in steps if s.state == DONE)}/{len(steps)} steps"
            for w, steps in waves
        )
        return publish_markdown(
            artifact_key(migration, STATUS), markdown, f"Status of migration {migration}: {summary}"
        )
    except Exception as err:  # the status is a courtesy: it never changes how a run ends
        log.warning("could not publish the migration status: %s", err)
        return None


def end_message(
    migration: str, waves: list[tuple[WaveProgress, list[StepView]]], chosen: list[str | None]
) -> str:
    """The run's final state message: what is done and what is left, wave by wave."""
    done, left = [], []
    for w, steps in waves:
        upcoming = next((s for s in steps if s.state in (NEXT, FAILED)), None)
        if upcoming is None:
            done.append(f"{w.label}: every step, {verdict_line(w)}")
            continue
        todo = [s.name for s in steps if s.state != DONE]
        why = "" if w.wave in chosen else " (not in this run)"
        left.append(f"{w.label}{why}: from {upcoming.name} ({', '.join(todo)})")
    text = "Done: " + ("; ".join(done) if done else "no wave finished yet") + "."
    if left:
        central = deployment_name("centralize", migration)
        text += f" Left: {'; '.join(left)}. Run '{central}' again to continue."
    else:
        text += " Nothing is left."
    return text

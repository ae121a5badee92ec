"""Prefect automations that tell operators when a migration's run waits, fails or dies.

``iamc deploy`` makes them beside the migration's deployments, on the same Prefect server:

* a flow run of the migration that pauses (the change board's approval, the bake period) sends
  a message through the spec's notification block (``[prefect] notify_block``);
* one that ends Failed or Crashed sends one too, with its state message and "press Retry";
* one that is Running but silent (no ``prefect.flow-run.heartbeat`` event) for
  ``crashed_after_seconds`` is marked Crashed: its worker or machine died, and nothing else
  would ever say so. This one needs no block. It is Prefect's own recipe
  (https://docs.prefect.io/v3/advanced/detect-zombie-flows).

Every automation is scoped by the tag ``migration:<name>`` that the runbook's deployments carry
(``iamc.serve.deployments``): Prefect copies a deployment's tags onto its flow runs, and both
the state-change events and the heartbeats list the flow run's tags as related resources
(``prefect.tag.<tag>``, role ``tag``). The silent-run automation also covers the subflow runs
a flow run starts in its own process, tagged ``migration-step:<name>`` (``engine.migration``):
they die with it. Each automation is named after the migration, so running
``ensure_automations`` again updates the same three instead of adding more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.distribution import migration_tag, step_run_tag
from domain.errors import ServeError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.automations import AutomationCore

log = logging.getLogger(__name__)

HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# Prefect refuses a shorter interval: its setting is `ge=30` (prefect/settings/models/flows.py)
# and a flow run whose environment asks for less fails to load its settings at all.
MIN_HEARTBEAT_SECONDS = 30
# A flow run is in one of these once its process is done with it: no heartbeat is due after.
TERMINAL_EVENTS = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)
# A blocking pause (console/approval.py, console/bake_pause.py) keeps the process, and its
# heartbeats, alive; a suspended run's process has left, so no heartbeat is expected.
PAUSED_EVENTS = ("prefect.flow-run.Paused", "prefect.flow-run.Suspended")
FAILED_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
# Notification blocks an operator is likely to have, for the message of a missing one.
NOTIFY_BLOCK_TYPES = "custom-webhook, slack-webhook, ms-teams-webhook, pager-duty-webhook"


def heartbeat_env(seconds: int) -> dict[str, str]:
    """The environment that makes a flow run send a heartbeat every ``seconds`` (at least 30).

    ``iamc deploy`` puts it into every deployment's job variables (``env``), so the flow runs a
    worker starts heartbeat and the silent-run automation can tell a dead one. Every process
    that runs the migration's flow runs needs it (``iamc serve``'s too): without it Prefect
    sends one every 180 s, and a run would be marked Crashed while alive if
    ``crashed_after_seconds`` is shorter.
    """
    return {HEARTBEAT_SETTING: str(max(seconds, MIN_HEARTBEAT_SECONDS))}


@dataclass(frozen=True)
class AutomationNames:
    """The names of one migration's automations: what makes them the same on every deploy."""

    paused: str
    failed: str
    silent: str

    @classmethod
    def of(cls, migration: str) -> AutomationNames:
        return cls(
            paused=f"iamc {migration}: run paused for approval",
            failed=f"iamc {migration}: run failed or crashed",
            silent=f"iamc {migration}: silent run marked crashed",
        )


def ensure_automations(
    migration: str,
    notify_block: str | None,
    *,
    heartbeat_seconds: int = 30,
    crashed_after_seconds: int = 120,
) -> list[str]:
    """Create or update the migration's automations on the Prefect server (``PREFECT_API_URL``).

    Args:
        migration: The spec's name; the automations cover the flow runs tagged
            ``migration:<name>``.
        notify_block: ``"<block type slug>/<block name>"`` of a notification block (as ``prefect
            block ls`` lists it, e.g. ``custom-webhook/ops-alerts``); None: no messages, and the
            migration's message automations made earlier are removed.
        heartbeat_seconds: How often the flow runs send a heartbeat (``heartbeat_env``).
        crashed_after_seconds: How long a Running flow run may stay silent before it is marked
            Crashed; more than ``heartbeat_seconds``, or live runs would be crashed.

    Returns:
        The names of the automations the migration has now, in the order above.

    Raises:
        ServeError: The block is missing or can't send notifications, or the silence allowed
            is not longer than the heartbeat interval.
    """
    from prefect.client.orchestration import get_client

    heartbeat = max(heartbeat_seconds, MIN_HEARTBEAT_SECONDS)
    if crashed_after_seconds <= heartbeat:
        raise ServeError(
            f"[prefect] crashed_after_seconds = {crashed_after_seconds} is not longer than the "
            f"heartbeat interval ({heartbeat} s): every running flow run would be marked "
            "Crashed between two heartbeats; make it at least twice the interval"
        )
    names = AutomationNames.of(migration)
    with get_client(sync_client=True) as client:
        wanted = [(names.silent, _silent_run(migration, names.silent, crashed_after_seconds))]
        if notify_block is None:
            for stale in (names.paused, names.failed):
                _delete_named(client, stale)
        else:
            block_id = _notification_block_id(client, notify_block)
            link = _flow_run_link()
            wanted = [
                (names.paused, _paused(migration, names.paused, block_id, link)),
                (names.failed, _failed(migration, names.failed, block_id, link)),
                *wanted,
            ]
        for name, automation in wanted:
            _put(client, name, automation)
    return [name for name, _ in wanted]


def _notification_block_id(client: SyncPrefectClient, slug: str) -> UUID:
    """The id of the block document ``<type>/<name>``, which must be able to notify."""
    from prefect.exceptions import ObjectNotFound

    block_type, _, block_name = slug.partition("/")
    try:
        document = client.read_block_document_by_name(
            name=block_name, block_type_slug=block_type, include_secrets=False
        )
    except ObjectNotFound:
        raise ServeError(
            f"the notification block {slug!r} ([prefect] notify_block) does not exist on the "
            f"Prefect server at {client.api_url}: create it there first, in the UI (Blocks, +, "
            f"the block type, named {block_name!r}) or from Python, e.g. "
            f"CustomWebhookNotificationBlock(name=..., url=...).save({block_name!r}) for "
            f"custom-webhook/{block_name}; then deploy again"
        ) from None
    capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise ServeError(
            f"the block {slug!r} ([prefect] notify_block) can't send notifications (a "
            f"{block_type!r} block has no notify): use a notification block type, such as "
            f"{NOTIFY_BLOCK_TYPES}"
        )
    return document.id


def _flow_run_link() -> str:
    """A Jinja expression for the triggering flow run's page in the UI.

    The UI's address as this client knows it (``PREFECT_UI_URL``, else from ``PREFECT_API_URL``):
    the server renders ``ui_url`` from its own ``PREFECT_UI_URL``, which a server started
    without one (``prefect server start``, iamc's) leaves empty, and the link would read None.
    """
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    if not base:
        return "{{ flow_run|ui_url }}"
    return f"{base.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}"


# What the message says of the run: its name, deployment and state (Jinja, rendered by the
# server's send-notification action with the flow run and deployment of the event).
_RUN = (
    "Flow run {{ flow_run.name }}"
    "{% if deployment %} of deployment '{{ deployment.name }}'{% endif %}"
    " is {{ flow_run.state.name }}"
)


def _tagged_flow_runs(migration: str, *, step_runs: bool = False) -> dict[str, Any]:
    """The trigger fields that select the migration's flow runs (with ``step_runs``, also the
    subflow runs they start in their own process: ``step_run_tag``)."""
    from prefect.events.schemas.events import ResourceSpecification

    tags = [migration_tag(migration)] + ([step_run_tag(migration)] if step_runs else [])
    return {
        "match": ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
        "match_related": ResourceSpecification(
            {
                "prefect.resource.id": [f"prefect.tag.{tag}" for tag in tags],
                "prefect.resource.role": "tag",
            }
        ),
        "for_each": {"prefect.resource.id"},
    }


def _paused(migration: str, name: str, block_id: UUID, link: str) -> AutomationCore:
    body = (
        f"Migration {migration}: {_RUN}. It waits for a decision: the change board's approval "
        "of the next stage, or the end of the bake period.\n"
        f"Open the run: {link}\n"
        "Read its artifacts, then press Resume (newer UI: in the run's menu) and fill in the "
        "form.\n"
        "{% if flow_run.state.message %}Prefect says: {{ flow_run.state.message }}\n{% endif %}"
    )
    return _notification(
        migration,
        name,
        block_id,
        told=f"when a flow run of {migration} pauses for them",
        events=PAUSED_EVENTS,
        subject=f"iamc {migration}: {{{{ flow_run.name }}}} waits for approval",
        body=body,
    )


def _failed(migration: str, name: str, block_id: UUID, link: str) -> AutomationCore:
    body = (
        f"Migration {migration}: {_RUN}.\n"
        "{% if flow_run.state.message %}{{ flow_run.state.message }}\n{% endif %}"
        f"Open the run: {link}\n"
        "Press Retry after fixing the cause: it continues from the state database's journal, "
        "and what is done is not repeated.\n"
    )
    return _notification(
        migration,
        name,
        block_id,
        told=f"when a flow run of {migration} fails or crashes",
        events=FAILED_EVENTS,
        subject=f"iamc {migration}: {{{{ flow_run.name }}}} {{{{ flow_run.state.name }}}}",
        body=body,
    )


def _notification(
    migration: str,
    name: str,
    block_id: UUID,
    *,
    told: str,
    events: Iterable[str],
    subject: str,
    body: str,
) -> AutomationCore:
    """An automation that sends ``subject`` and ``body`` through the notification block when
    a flow run of ``migration`` emits one of ``events``."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=name,
        description=f"Tells the operators {told}.",
        enabled=True,
        tags=["iam-centralize", migration_tag(migration)],
        trigger=EventTrigger(
            **_tagged_flow_runs(migration),
            expect=set(events),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=subject, body=body)],
    )


def _silent_run(migration: str, name: str, crashed_after_seconds: int) -> AutomationCore:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    # After a heartbeat, the next heartbeat or a state in which none is due, within the
    # silence allowed; otherwise the run's process is gone.
    return AutomationCore(
        name=name,
        description=(
            f"Marks a running flow run of {migration} Crashed when it has sent no heartbeat "
            f"for {crashed_after_seconds} s: its worker or machine died."
        ),
        enabled=True,
        tags=["iam-centralize", migration_tag(migration)],
        trigger=EventTrigger(
            **_tagged_flow_runs(migration, step_runs=True),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *TERMINAL_EVENTS, *PAUSED_EVENTS},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crashed_after_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {crashed_after_seconds} s: the process running this flow "
                    "run is gone (its worker or machine died, or it was killed)."
                ),
            )
        ],
    )


def _put(client: SyncPrefectClient, name: str, automation: AutomationCore) -> None:
    """Create the automation, or update the one of that name (and drop any duplicates)."""
    existing = client.read_automations_by_name(name)
    if not existing:
        automation_id = client.create_automation(automation)
        log.info("created automation %r (%s)", name, automation_id)
        return
    keep, *duplicates = existing
    client.update_automation(keep.id, automation)
    for duplicate in duplicates:
        client.delete_automation(duplicate.id)
    log.info("updated automation %r (%s)", name, keep.id)


def _delete_named(client: SyncPrefectClient, name: str) -> None:
    for automation in client.read_automations_by_name(name):
        client.delete_automation(automation.id)
        log.info("deleted automation %r (%s): no notification block", name, automation.id)

"""The registry of the runbook's stages: each stage module registers one :class:`StageDefinition`.

A stage is a plug-in (cloud-custodian registers each action by name in a resource's
``action_registry``): ``stages/provision.py``, ``stages/disable.py`` and ``stages/delete.py``
each declare how the stage plans its actions, the handlers that carry them out and their undo
order, what runs per account, the live preconditions re-checked before every mutation,
whether it can be undone and how it is approved. Planning, ``apply``, ``resume``,
``rollback``, ``status``, the plan renderings, the approval form and the CLI look stages up
here instead of naming them. Importing the ``stages`` package registers the runbook's own.

The engine-side parts are typed loosely here (the domain knows no AWS adapter nor engine):
``handlers`` maps an action kind to a ``tasks.handler.Handler``, ``per_account`` takes the
engine's ``engine.stage_run.StageRun``, ``preconditions`` an
``engine.preconditions.StagePreconditions``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic_core import core_schema

from domain.errors import PlanError


class Stage(str):
    """A runbook stage's name. The set is open: ``domain.stages`` holds the registered ones.

    The runbook's own stages are constants here because plans, the journal and the approvals
    of every version name them; a stage added later is only its module (``stages/``).
    In a Prefect flow's parameters it validates against the registry, and the UI's form
    offers the registered stages.
    """

    PROVISION: ClassVar[Stage]
    REPLACE: ClassVar[Stage]
    DISABLE: ClassVar[Stage]
    DELETE: ClassVar[Stage]

    @property
    def value(self) -> str:
        """The name as a plain string (as an enum member's ``value``)."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Stage({str.__str__(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_after_validator_function(
            as_stage,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "title": "Stage", "enum": stage_names()}


Stage.PROVISION = Stage("provision")
Stage.REPLACE = Stage("replace")
Stage.DISABLE = Stage("disable")
Stage.DELETE = Stage("delete")


# Approval: covered by an approval of "all" with the other such stages, or on its own only.
WITH_ALL = "with-all"
ON_ITS_OWN = "on-its-own"
ALL = "all"


@dataclass(frozen=True)
class StageDefinition:
    """One runbook stage, as every floor sees it.

    Attributes:
        name: What operators type (``--stage NAME``) and what the journal records.
        order: Its place in the runbook: plans list, approve and apply stages in this order.
        summary: One line for plan.md, the approval form and ``--help``.
        plan_actions: ``PlanInputs -> [PlanAction]``: this stage's actions (pure).
        handlers: ``() -> {action kind: handler}`` (the handler probes, applies and undoes
            it); a loader, so listing the stages imports no AWS adapter.
        per_account: ``(runtime, account id, actions) -> account report``: what the stage
            does in one account. The engine runs every account (``engine.account_work``),
            each contained: one that fails ends Failed with AWS's reason, the others go on.
        first: ``(runtime, actions) -> report``: what runs in the management account before
            any member account (provision's permission sets), for actions of ``first_kinds``.
        first_kinds: The action kinds ``first`` does.
        first_label: ``first``'s task name in the UI.
        accounts_at_once: Accounts worked on at once outside a Prefect flow (inside one, the
            flow's task runner decides), or a function giving it when the stage runs.
        undo_order: Action kinds in the order a rollback undoes them (or their loader);
            empty: irreversible.
        irreversible_hint: What to say when a rollback is asked of this stage (``{spec}``,
            ``{run}``: the spec path and the run id).
        preconditions: The live checks re-proved before each change (``None``: the stage
            changes nothing that takes access away).
        before_run: Checks run once before the run's first AWS change, each
            ``(runtime, actions) -> None`` raising ``ApplyRefused``.
        approval: :data:`WITH_ALL` or :data:`ON_ITS_OWN`.
        approval_count: For a stage approved on its own by quoting a number (delete: the
            IAM users it deletes), ``Plan -> int``; ``None``: no number is quoted.
        takes_access_away: Its users are re-proved one by one and may be refused (shown as
            refused in status and the UI) instead of the whole account being re-read.
        undo_keeps_shared: A rollback keeps what another plan (wave) still uses.
    """

    name: str
    order: int
    summary: str
    plan_actions: Callable[[Any], list[Any]]  # domain.planning.PlanInputs -> actions
    handlers: Callable[[], Mapping[str, Any]]
    per_account: Callable[..., Any]  # (StageRun, account id, actions) -> AccountReport
    undo_order: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    irreversible_hint: str = ""
    preconditions: Any = None
    before_run: tuple[Callable[..., None], ...] = ()
    approval: str = WITH_ALL
    approval_count: Callable[[Any], int] | None = None  # domain.plan.Plan -> count
    takes_access_away: bool = False
    undo_keeps_shared: bool = False
    first: Callable[..., Any] | None = None
    first_kinds: tuple[str, ...] = ()
    first_label: str = "management account"
    # The label of ``first``'s task for the actions it runs, when they say more than one label
    # can (provision's first work is Identity Center's sets, or the identity account's side).
    first_label_for: Callable[[list[Any]], str] | None = None
    accounts_at_once: int | Callable[[], int] = 8

    def undo_kinds(self) -> tuple[str, ...]:
        """The kinds a rollback undoes, in order (loaded on first use when given a loader)."""
        order = self.undo_order
        return tuple(order() if callable(order) else order)

    @property
    def reversible(self) -> bool:
        """Whether ``iamc rollback`` can undo what this stage did."""
        return bool(self.undo_kinds())


_REGISTRY: dict[str, StageDefinition] = {}
# The runbook's own stages live in the ``stages`` package, above every floor that reads them.
# It is imported by name on first use, as cloud-custodian's ``load_resources`` imports its
# resource modules: the one reference from the domain upwards, and it only registers.
BUILTIN_PACKAGE = "stages"
_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        importlib.import_module(BUILTIN_PACKAGE)


def register(definition: StageDefinition) -> StageDefinition:
    """Add a stage (its module's one registration line); a name is registered once.

    Raises:
        ValueError: Another definition already holds the name or the name is reserved.
    """
    if definition.name == ALL:
        raise ValueError(f"stage name {ALL!r} is reserved for approvals")
    held = _REGISTRY.get(definition.name)
    if held is not None and held is not definition:
        raise ValueError(f"stage {definition.name!r} is already registered")
    _REGISTRY[definition.name] = definition
    return definition


def unregister(name: str) -> None:
    """Remove a stage (tests that register an example stage clean up with this)."""
    _REGISTRY.pop(name, None)


def stages() -> list[StageDefinition]:
    """The registered stages in runbook order."""
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))


def stage_names() -> list[str]:
    """The registered stage names in runbook order."""
    return [s.name for s in stages()]


def stage(name: str) -> StageDefinition:
    """The stage called ``name``.

    Raises:
        PlanError: No such stage; the message lists the registered ones.
    """
    _load_builtin()
    found = _REGISTRY.get(str(name))
    if found is None:
        raise PlanError(f"--stage: expected one of {', '.join(stage_names())}; got {name!r}")
    return found


def order_of(name: str) -> int:
    """A stage's place in the runbook (unknown names sort last)."""
    _load_builtin()
    found = _REGISTRY.get(str(name))
    return found.order if found is not None else 1_000_000


def approval_choices() -> list[str]:
    """What ``iamc approve --stage`` accepts: ``all``, then every stage."""
    return [ALL, *stage_names()]


def approved_with_all() -> list[str]:
    """The stages an approval of ``all`` covers (never one approved on its own)."""
    return [s.name for s in stages() if s.approval == WITH_ALL]


def authorised_by(name: str) -> tuple[str, ...]:
    """Which approved stages let stage ``name`` be applied: itself, and ``all`` if it may.

    A stage approved on its own (delete) is authorised by no other approval, not even an
    ``all`` recorded when an earlier version still counted it among them.
    """
    _load_builtin()
    found = _REGISTRY.get(str(name))
    if found is None:
        return ()
    return (found.name, ALL) if found.approval == WITH_ALL else (found.name,)


def as_stage(name: str) -> Stage:
    """``name`` as a :class:`Stage`, checked against the registry."""
    return Stage(stage(name).name)

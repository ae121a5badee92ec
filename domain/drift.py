"""Drift: what the migration created or adopted that is no longer as it left it, and the plan
that puts it back.

The findings are plain data; the plan is an ordinary plan of provision-stage actions, the
same kinds with the same params the provision stage plans (``domain.access_plan``), so
approval, apply with its probes and journal, and rollback work on it unchanged. Its content
carries a ``drift`` section, which tells it apart from a plan of the migration or of a wave:
it is no wave's plan, and never becomes the migration's latest plan. Nothing here talks to
AWS or SQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from domain.customer_policy_choice import policy_references
from domain.plan import Plan, PlanAction, sha256_of
from domain.records import Finding
from domain.stages import Stage
from domain.waves import AWS_FIELDS, Owned, differing_fields

# What a drift of a set the migration adopted (found there, never created) says instead of a
# plan to put it back: it was someone else's before the migration, and is still theirs.
NOT_OURS = "adopted: not ours to change; restore it by hand or adopt the change"


class DriftKind(StrEnum):
    """What drifted."""

    SET_CHANGED = "set-changed"  # its definition was edited outside iamc
    SET_DELETED = "set-deleted"  # it is gone from Identity Center
    # Its latest definition is not deployed to an account (edited, or never re-provisioned),
    # or the account no longer has it at all.
    SET_NOT_PROVISIONED = "set-not-provisioned"
    ASSIGNMENT_REMOVED = "assignment-removed"


@dataclass(frozen=True)
class DriftFinding:
    """One thing that is not as the migration left it.

    ``fields``: for ``set-changed``, the fields of the set that differ (``AWS_FIELDS``).
    ``principal``: for ``assignment-removed``, ``USER alice (id)``.
    """

    kind: DriftKind
    permission_set: str
    account_id: str | None = None
    principal: str | None = None
    fields: tuple[str, ...] = ()
    detail: str = ""

    def text(self) -> str:
        where = f" in {self.account_id}" if self.account_id else ""
        who = f" for {self.principal}" if self.principal else ""
        what = f": {', '.join(self.fields)} differ" if self.fields else ""
        more = f" ({self.detail})" if self.detail else ""
        return f"{self.kind} {self.permission_set}{who}{where}{what}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind), "fields": list(self.fields)}


@dataclass
class DriftRead:
    """One read of everything the migration owns against AWS.

    ``live``: set name -> its live definition (``tasks.permission_sets.read_permission_set``
    shape), for the sets that changed. ``not_read``: account id -> why it could not be read;
    a read with any is partial, and says so wherever it is shown.
    """

    read_at: str
    findings: list[DriftFinding] = field(default_factory=list)
    accounts_read: list[str] = field(default_factory=list)
    not_read: dict[str, str] = field(default_factory=dict)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    sets_read: bool = True  # False: the management account's read failed (nothing compared)

    @property
    def complete(self) -> bool:
        return self.sets_read and not self.not_read


def set_findings(
    ours: Owned, live: dict[str, dict[str, Any] | None]
) -> tuple[list[DriftFinding], dict[str, dict[str, Any]]]:
    """Each set of ours against its live definition (None: no set of that name).

    Returns:
        The findings, and the live definitions of the sets that changed.
    """
    findings, changed = [], {}
    for name, known in sorted(ours.sets.items()):
        now = live.get(name)
        if now is None:
            gone = "gone from AWS" if known.ours else f"gone from AWS; {NOT_OURS}"
            findings.append(DriftFinding(DriftKind.SET_DELETED, name, detail=gone))
            continue
        differ = differing_fields(known.definition, now)
        if differ:
            findings.append(
                DriftFinding(
                    DriftKind.SET_CHANGED,
                    name,
                    fields=tuple(differ),
                    detail="" if known.ours else NOT_OURS,
                )
            )
            changed[name] = now
    return findings, changed


def account_findings(
    ours: Owned,
    account_id: str,
    arns: dict[str, str],
    provisioned: set[str],
    stale: set[str],
    assigned: dict[str, set[tuple[str, str]]],
) -> list[DriftFinding]:
    """One account against what the migration did there.

    Args:
        ours: What the migration owns.
        account_id: The account.
        arns: Set name -> ARN of the sets of ours that exist.
        provisioned: ARNs of the sets provisioned to the account.
        stale: ARNs of those whose latest definition is not provisioned there.
        assigned: Set name -> (principal type, principal id) of its assignments here.
    """
    findings = []
    for name, known in sorted(ours.sets.items()):
        arn = arns.get(name)
        if arn is None or account_id not in known.accounts:
            continue  # a deleted set is one finding of its own
        status = None
        if arn not in provisioned:
            status = "not provisioned"
        elif arn in stale:
            status = "LATEST_PERMISSION_SET_NOT_PROVISIONED"
        if status is not None:
            detail = status if known.ours else f"{status}; {NOT_OURS}"
            findings.append(
                DriftFinding(DriftKind.SET_NOT_PROVISIONED, name, account_id, detail=detail)
            )
    for key, params in ours.assignments.items():
        acct, name, ptype, pid = key
        if acct != account_id or name not in arns:
            continue
        if (ptype, pid) not in assigned.get(name, set()):
            findings.append(
                DriftFinding(
                    DriftKind.ASSIGNMENT_REMOVED,
                    name,
                    account_id,
                    principal=_principal(params),
                    detail=NOT_OURS if _not_ours(ours, key) else "",
                )
            )
    return findings


def _not_ours(ours: Owned, key: tuple[str, str, str, str]) -> bool:
    """An assignment adopted into a set the migration adopted: nothing of it is ours to put
    back. (One a plan created is the migration's, whoever owns the set.)"""
    known = ours.sets.get(key[1])
    return key in ours.adopted and (known is None or not known.ours)


def _principal(params: dict[str, Any]) -> str:
    name = params.get("principal_name") or params.get("principal_id")
    return f"{params.get('principal_type')} {name} ({params.get('principal_id')})"


def _live_definition(recorded: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """The live set in the shape of its recorded definition: what the update is made from
    (its probe refuses if the set moved again since this read) and what its undo restores."""
    return {
        **recorded,
        **{name: live.get(name) for name in AWS_FIELDS},
        "description": live.get("description") or "",
    }


def _references(definition: dict[str, Any]) -> list[dict[str, str]]:
    """What provisioning checks in each account: the plan's own references, with the document
    each was planned with (``domain.customer_policy_choice.policy_references``)."""
    return policy_references(
        definition.get("customer_managed_policies") or [],
        definition.get("permissions_boundary"),
        definition.get("customer_managed_choice"),
    )


def drift_plan(migration: str, snapshot_id: int, ours: Owned, read: DriftRead) -> Plan | None:
    """The plan that puts back every drift of ``read``; None when nothing drifted.

    A changed set is updated to its recorded definition and provisioned again to every
    account that has it (what an edit and a provisioning outside iamc may have changed there);
    a deleted one is created again, provisioned and its assignments created; a set whose latest
    definition is not provisioned to an account is provisioned there; a removed assignment is
    created again. Accounts the read could not reach get no action. A set the migration
    adopted (``OrgPermissionSet.ours`` false) is someone else's: its drift is reported, never
    put back; only the assignments a plan created in it are created again. None too when
    nothing that drifted is the migration's to put back (the read's findings still say it).
    """
    if not read.findings:
        return None
    restore = _Restore(ours, read)
    for finding in read.findings:
        restore.add(finding)
    restore.provisions()
    restore.assignment_actions()
    if not restore.actions:
        return None
    return Plan(
        migration=migration,
        inventory_snapshot_id=snapshot_id,
        mapping_run_id=None,
        settings={},
        users=[],
        actions=list(restore.actions.values()),
        permission_sets=restore.sets,
        assignments=restore.assigned,
        required_customer_policies=[],
        findings=[_as_finding(f) for f in read.findings] + _unread_findings(read),
        drift=drift_section(read),
    )


class _Restore:
    """The drift plan's actions as they are gathered, keyed by id (each once)."""

    def __init__(self, ours: Owned, read: DriftRead):
        self.ours, self.read = ours, read
        self.actions: dict[str, PlanAction] = {}
        self.set_action: dict[str, str] = {}  # set name -> the action that restores it
        self.sets: list[dict[str, Any]] = []
        self.provision_to: set[tuple[str, str]] = set()
        self.wanted: list[dict[str, Any]] = []  # assignments' params to create
        self.assigned: list[dict[str, Any]] = []

    def add(self, finding: DriftFinding) -> None:
        known = self.ours.sets.get(finding.permission_set)
        if known is None:
            return
        if not known.ours:
            # Adopted: the finding says so, and only assignments a plan created are put back
            # (updating, creating or provisioning the set would change someone else's set).
            if finding.kind == DriftKind.ASSIGNMENT_REMOVED:
                self._assignments(finding, created_only=True)
            return
        name, definition = known.name, known.definition
        reached = [a for a in known.accounts if a not in self.read.not_read]
        if finding.kind == DriftKind.SET_CHANGED:
            params = {
                "definition": definition,
                "previous": _live_definition(definition, self.read.live[name]),
                "changes": [f"{f.replace('_', ' ')} restored" for f in finding.fields],
                "created_by": known.created_by,
                "reprovision_accounts": list(known.accounts),
            }
            self._set_action("update-permission-set", name, definition, params, finding)
            self.provision_to |= {(a, name) for a in reached}
        elif finding.kind == DriftKind.SET_DELETED:
            params = {"definition": definition}
            self._set_action("create-permission-set", name, definition, params, finding)
            self.provision_to |= {(a, name) for a in reached}
            self.wanted += [
                p
                for key, p in self.ours.assignments.items()
                if key[1] == name and key[0] not in self.read.not_read
            ]
        elif finding.kind == DriftKind.SET_NOT_PROVISIONED and finding.account_id:
            self.provision_to.add((finding.account_id, name))
        elif finding.kind == DriftKind.ASSIGNMENT_REMOVED:
            self._assignments(finding, created_only=False)

    def _assignments(self, finding: DriftFinding, created_only: bool) -> None:
        self.wanted += [
            p
            for key, p in self.ours.assignments.items()
            if key[0] == finding.account_id
            and key[1] == finding.permission_set
            and _principal(p) == finding.principal
            and not (created_only and key in self.ours.adopted)
        ]

    def _set_action(
        self,
        kind: str,
        name: str,
        definition: dict[str, Any],
        params: dict[str, Any],
        finding: DriftFinding,
    ) -> None:
        action_id = self.set_action[name] = f"provision:{kind}:{name}"
        self.actions[action_id] = PlanAction(
            id=action_id,
            stage=Stage.PROVISION,
            kind=kind,
            account_id=None,
            target=name,
            target_fingerprint=sha256_of(definition),
            params={**params, "drift": finding.as_dict()},
        )
        self.sets.append(definition)

    def provisions(self) -> None:
        for account_id, name in sorted(self.provision_to):
            definition = self.ours.sets[name].definition
            restored_by = self.set_action.get(name)
            why = f"restored by {restored_by}" if restored_by else "latest definition not there"
            action_id = f"provision:provision-permission-set:{name}:{account_id}"
            self.actions[action_id] = PlanAction(
                id=action_id,
                stage=Stage.PROVISION,
                kind="provision-permission-set",
                account_id=account_id,
                target=name,
                target_fingerprint=sha256_of({"definition": definition, "account": account_id}),
                params={
                    "required_customer_policies": _references(definition),
                    "reprovision": f"drift: {why}",
                },
                depends_on=[restored_by] if restored_by else [],
            )

    def assignment_actions(self) -> None:
        for params in self.wanted:
            account_id, name = str(params["account_id"]), str(params["permission_set_name"])
            action_id = (
                f"provision:create-assignment:{account_id}:{name}"
                f":{params['principal_type']}:{params['principal_id']}"
            )
            if action_id in self.actions:
                continue
            self.assigned.append(params)
            provision = f"provision:provision-permission-set:{name}:{account_id}"
            before = provision if provision in self.actions else self.set_action.get(name)
            self.actions[action_id] = PlanAction(
                id=action_id,
                stage=Stage.PROVISION,
                kind="create-assignment",
                account_id=account_id,
                target=f"{str(params['principal_type']).lower()} "
                f"{params.get('principal_name') or params['principal_id']} -> {name}",
                target_fingerprint=sha256_of(params),
                params=dict(params),
                depends_on=[before] if before else [],
            )


def drift_section(read: DriftRead) -> dict[str, Any]:
    """The plan's ``drift`` section: in its content, so in its hash (a later read of the same
    drift is a new plan: the journal of an applied one would take its actions as done)."""
    return {
        "read_at": read.read_at,
        "complete": read.complete,
        "accounts_read": list(read.accounts_read),
        "accounts_not_read": dict(read.not_read),
        "findings": [f.as_dict() for f in read.findings],
    }


def _as_finding(drift: DriftFinding) -> Finding:
    return Finding(
        severity="warning",
        kind=f"drift-{drift.kind}",
        message=drift.text(),
        account_id=drift.account_id,
        subject=drift.permission_set,
        details={"fields": list(drift.fields), "principal": drift.principal},
    )


def _unread_findings(read: DriftRead) -> list[Finding]:
    found = [
        Finding(
            severity="warning",
            kind="drift-account-not-read",
            message=f"account {account_id} could not be read, so its drift is unknown and not "
            f"in this plan: {why}",
            account_id=account_id,
        )
        for account_id, why in sorted(read.not_read.items())
    ]
    if not read.sets_read:
        found.append(
            Finding(
                severity="warning",
                kind="drift-sets-not-read",
                message="the permission sets could not be read: their drift is unknown",
            )
        )
    return found


def drift_markdown(
    read: DriftRead, plan_id: int | None = None, plan_hash: str = "", plan: Plan | None = None
) -> str:
    """What drifted, for people (the plan file's and the Prefect artifact's text)."""
    lines = ["# Drift of what the migration created or adopted", ""]
    lines.append(f"- **Read at:** {read.read_at}")
    lines.append(f"- **Accounts read:** {len(read.accounts_read)}")
    if not read.complete:
        lines.append(
            "- **PARTIAL READ:** "
            + "; ".join(
                [f"account {a} not read: {why}" for a, why in sorted(read.not_read.items())]
                + ([] if read.sets_read else ["the permission sets were not read"])
            )
            + ". What was not read may have drifted too: fix the cause and run `iamc drift` "
            "again."
        )
    if plan_id is not None:
        lines.append(
            f"- **Plan that puts it back:** {plan_id} (hash `{plan_hash}`): approve it with "
            f"`iamc approve {plan_id} --stage provision --hash {plan_hash[:12]} ...`, apply with "
            f"`iamc apply {plan_id} --stage provision`"
        )
    lines.append("")
    if not read.findings:
        lines.append("Nothing drifted" + ("." if read.complete else " in what was read."))
        return "\n".join(lines) + "\n"
    lines += ["| drift | permission set | account | principal | what |", "|---|---|---|---|---|"]
    for f in read.findings:
        what = ", ".join(f.fields) + (" differ" if f.fields else "") or f.detail
        lines.append(
            f"| {f.kind} | {f.permission_set} | {f.account_id or ''} | {f.principal or ''} "
            f"| {what} |"
        )
    if plan is not None:
        lines += ["", "## Actions that put it back (stage `provision`)", ""]
        lines += [f"- `{a.id}`: {a.kind} {a.target}" for a in plan.actions]
    return "\n".join(lines) + "\n"

"""The dry-run plan: typed actions with stable ids, per-target fingerprints and a content hash.

Plans are data (Terraform's saved plan): computing them is here, rendering is in
``domain.plan_render``, storing in ``state``. Nothing in this module talks to AWS.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from domain.json_compat import dumps_compact
from domain.keys import mask_key_id
from domain.records import (
    AccountInventory,
    Finding,
    GroupMapping,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.teardown import QUARANTINE_POLICY, QUARANTINE_POLICY_NAME, TEARDOWN
from domain.waves import OrgPermissionSet, definition_changes

# Format 2: the hash covers what the plan does, not where it was computed from (format 1
# hashed the snapshot and mapping-run ids too, so re-running inventory or map with nothing
# changed made a new plan and orphaned its approval). Format-1 plans keep their old hash.
PLAN_FORMAT = 2
# Recorded in the plan for the reader, left out of its hash.
PROVENANCE_KEYS = ("inventory_snapshot_id", "mapping_run_id")


def hashed_content(content: dict[str, Any]) -> dict[str, Any]:
    """The part of a plan's content its hash covers: everything but its provenance."""
    if content.get("format", 1) < 2:
        return content
    return {k: v for k, v in content.items() if k not in PROVENANCE_KEYS}


class Stage(StrEnum):
    PROVISION = "provision"
    DISABLE = "disable"
    DELETE = "delete"


STAGE_ORDER = {Stage.PROVISION: 0, Stage.DISABLE: 1, Stage.DELETE: 2}
_STAGES = {str(stage): stage for stage in Stage}


class Outcome(StrEnum):
    """What the plan does with one IAM user."""

    MIGRATE = "migrate"  # provision its access in Identity Center, then disable and delete
    RETIRE = "retire"  # unused: disable and delete, nothing to provision
    SKIP_PROTECTED = "skip-protected"
    SKIP_WORKLOAD = "skip-workload"
    SKIP_UNMATCHED = "skip-unmatched"
    SKIP_AMBIGUOUS = "skip-ambiguous"
    SKIP_BLOCKED = "skip-blocked"


_OUTCOMES = {str(outcome): outcome for outcome in Outcome}


@dataclass
class PlanAction:
    id: str
    stage: Stage
    kind: str
    account_id: str | None
    target: str
    target_fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    irreversible: bool = False
    depends_on: list[str] = field(default_factory=list)


@dataclass
class UserPlan:
    account_id: str
    user: str
    user_class: str
    outcome: Outcome
    reason: str
    target_fingerprint: str
    identity: str | None = None  # identity-store user name it maps to
    permission_sets: list[str] = field(default_factory=list)


@dataclass
class Plan:
    migration: str
    inventory_snapshot_id: int
    mapping_run_id: int | None
    settings: dict[str, Any]
    users: list[UserPlan]
    actions: list[PlanAction]
    permission_sets: list[dict[str, Any]]
    assignments: list[dict[str, Any]]
    required_customer_policies: list[dict[str, str]]
    findings: list[Finding]
    format: int = PLAN_FORMAT
    # {"name": ..., "accounts": [...]} for a plan of one wave; None: the spec has no waves.
    wave: dict[str, Any] | None = None

    @property
    def blocking(self) -> list[Finding]:
        """Blocking findings about the whole plan; user-scoped ones only skip their user."""
        return [f for f in self.findings if f.severity == "blocking" and not user_scoped(f)]

    def refused_users(self) -> list[UserPlan]:
        """Users the plan will not disable or delete because something blocks them."""
        return [u for u in self.users if u.outcome == Outcome.SKIP_BLOCKED]

    def blocking_for(self, stage: str) -> list[Finding]:
        """Blocking findings that hold ``stage`` ("all": any). A finding may name the stages
        it holds in ``details["stages"]`` (a hard-coded active key holds disable and delete,
        not provision); one that names none holds every stage."""
        return [
            f
            for f in self.blocking
            if stage == "all" or not f.details.get("stages") or stage in f.details["stages"]
        ]

    def content(self) -> dict[str, Any]:
        """Everything the plan says, deterministic: the input of its hash."""
        # Shallow dicts, not dataclasses.asdict: asdict deep-copies every action's params,
        # which dominated planning time at 10,000 users. Params are JSON data already.
        return {
            "format": self.format,
            "migration": self.migration,
            "inventory_snapshot_id": self.inventory_snapshot_id,
            "mapping_run_id": self.mapping_run_id,
            "settings": self.settings,
            "users": [_shallow(u) for u in self.users],
            "actions": [_shallow(a) for a in self.actions],
            "permission_sets": self.permission_sets,
            "assignments": self.assignments,
            "required_customer_policies": self.required_customer_policies,
            "findings": [asdict(f) for f in self.findings],
            # Only in wave plans, so a spec without waves keeps the content (and hash) it had.
            **({"wave": self.wave} if self.wave is not None else {}),
        }

    @property
    def wave_name(self) -> str | None:
        return self.wave["name"] if self.wave else None

    def access_key_ids(self) -> set[str]:
        """Every access key id the plan names (to mask them in what people read)."""
        found = {a.params["access_key_id"] for a in self.actions if "access_key_id" in a.params}
        found |= {
            item
            for a in self.actions
            if a.kind == "delete-access-key"
            for item in a.params.get("items", [])
        }
        return found

    def content_hash(self) -> str:
        """The hash a change board approves: of the content, not of the ids it came from."""
        return sha256_of(hashed_content(self.content()))

    @classmethod
    def from_content(cls, content: dict[str, Any]) -> Plan:
        return cls(
            migration=content["migration"],
            inventory_snapshot_id=content["inventory_snapshot_id"],
            mapping_run_id=content["mapping_run_id"],
            settings=content["settings"],
            # Enum lookups by dict: Outcome(value) costs ~1 us x 87,000 rows at 10,000 users.
            users=[UserPlan(**{**u, "outcome": _OUTCOMES[u["outcome"]]}) for u in content["users"]],
            actions=[PlanAction(**{**a, "stage": _STAGES[a["stage"]]}) for a in content["actions"]],
            permission_sets=content["permission_sets"],
            assignments=content["assignments"],
            required_customer_policies=content["required_customer_policies"],
            findings=[Finding(**f) for f in content["findings"]],
            format=content.get("format", 1),
            wave=content.get("wave"),
        )


# A blocking finding with ``details["scope"] == "user"`` (a hard-coded active key of one user,
# say) blocks only that user: it is skipped with the reason, and the plan stays approvable.
USER_SCOPE = "user"


def user_scoped(finding: Finding) -> bool:
    """Whether a finding blocks one user (named by subject ``user NAME``), not the plan."""
    return (
        finding.details.get("scope") == USER_SCOPE
        and bool(finding.account_id)
        and str(finding.subject or "").startswith("user ")
    )


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _shallow(record: Any) -> dict[str, Any]:
    # dataclasses.fields() rebuilds its tuple on every call: 870,000 calls at 10,000 users.
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    attributes = getattr(record, "__dict__", None)
    if attributes is not None and len(attributes) == len(names):
        # A dataclass instance's __dict__ holds exactly its fields: copied in C.
        return attributes.copy()
    return {name: getattr(record, name) for name in names}


def canonical(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)``: the text
    plan hashes and fingerprints are taken of (orjson's speed: domain.json_compat)."""
    return dumps_compact(value).decode()


def sha256_of(value: Any) -> str:
    return hashlib.sha256(dumps_compact(value)).hexdigest()


def user_fingerprint(user: User) -> str:
    """The live state a user-level action is planned from.

    Last-used dates are left out on purpose: they move every day without changing what the
    plan would do. Everything that changes what a disable or delete touches is in.
    """
    return sha256_of(
        {
            "arn": user.arn,
            "user_id": user.user_id,
            "password_enabled": user.password_enabled,
            "access_keys": sorted((k.key_id, k.status) for k in user.access_keys),
            "mfa": sorted(d.serial for d in user.mfa_devices),
            "ssh": sorted((k.key_id, k.status) for k in user.ssh_public_keys),
            "certs": sorted((c.certificate_id, c.status) for c in user.signing_certificates),
            "service_credentials": sorted(
                (c.credential_id, c.status) for c in user.service_specific_credentials
            ),
            "attached": sorted(p.arn for p in user.attached_policies),
            "inline": sorted((p.name, canonical(p.document)) for p in user.inline_policies),
            "groups": sorted(user.groups),
            "boundary": user.permissions_boundary_arn,
            "tags": user.tags,
        }
    )


def unseen_account_findings(
    inventories: list[AccountInventory],
    reasons: dict[str, str],
    exclude_accounts: list[str],
) -> list[Finding]:
    """One finding per in-scope account the inventory could not read.

    A plan made without seeing an account can't say what happens to that account's IAM users:
    it is blocking, unless the spec now excludes the account (by id, or by its parent OU), in
    which case it is only noted.

    Args:
        inventories: The snapshot's accounts; those with ``error`` set were not read.
        reasons: account id -> failure kind (``unreachable``, ``cannot-assume-role``, ...).
        exclude_accounts: The spec's ``scope.exclude_accounts``.
    """
    findings = []
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        if not inventory.error:
            continue
        account = inventory.account
        reason = reasons.get(account.account_id, "inventory-failed")
        label = f"{account.account_id} ({account.name})" if account.name else account.account_id
        excluded = account.account_id in exclude_accounts or (
            account.parent_id is not None and account.parent_id in exclude_accounts
        )
        details = {"account_name": account.name, "reason": reason, "error": inventory.error}
        if excluded:
            findings.append(
                Finding(
                    severity="info",
                    kind="account-not-inventoried-excluded",
                    message=f"account {label} was not inventoried ({reason}) and the spec now "
                    "excludes it: nothing is planned for it",
                    account_id=account.account_id,
                    details=details,
                )
            )
            continue
        findings.append(
            Finding(
                severity="blocking",
                kind="account-not-inventoried",
                message=f"account {label} could not be inventoried ({reason}: "
                f"{inventory.error}): this plan can't say what happens to its IAM users; run "
                "'iamc inventory' again once it answers, or exclude it in [scope] "
                "exclude_accounts",
                account_id=account.account_id,
                details=details,
            )
        )
    return findings


def _users_blocked(
    findings: list[Finding], group_members: dict[tuple[str, str], list[str]]
) -> dict[tuple[str, str], str]:
    """(account, user) -> reason, for blocking findings about users or their groups.

    Synthesis names who holds a permission set as "user NAME" or "group NAME"; a group's
    members are blocked with it, since their access could not be provisioned either.
    """
    blocked: dict[tuple[str, str], str] = {}
    for finding in findings:
        if finding.severity != "blocking" or not finding.account_id:
            continue
        holders = [
            *(finding.details.get("holders") or []),
            *(finding.details.get("needed_by") or []),
        ]
        if finding.subject:
            # Synthesis joins several holders into one subject: "user a, group b".
            holders.extend(finding.subject.split(", "))
        for holder in holders:
            kind, _, name = str(holder).partition(" ")
            if kind == "user":
                names = [name]
            elif kind == "group":
                names = group_members.get((finding.account_id, name), [])
            else:
                continue
            for user_name in names:
                blocked.setdefault(
                    (finding.account_id, user_name), f"{finding.kind}: {finding.message}"
                )
    return blocked


def build_plan(
    *,
    migration: str,
    inventory_snapshot_id: int,
    mapping_run_id: int | None,
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
    synthesis: Any,
    settings: dict[str, Any],
    extra_findings: list[Finding] | None = None,
    wave: dict[str, Any] | None = None,
    organization: dict[str, OrgPermissionSet] | None = None,
) -> Plan:
    """Turn an inventory, its mapping and the synthesized access into an ordered plan.

    Args:
        synthesis: a ``domain.synthesis.SynthesisResult``.
        settings: what the change board should see of the spec (bake days, inactive days...).
        wave: ``{"name", "accounts"}`` when the plan is one wave's.
        organization: the permission sets earlier plans created, by fingerprint
            (:func:`domain.waves.organization_sets`). A set of this plan whose definition
            differs from the one the organization has (session duration, description) is
            planned as an update, re-provisioned to every account that already has it.
    """
    mappings = {(m.account_id, m.iam_user): m for m in user_mappings}
    findings = sorted(
        [*synthesis.findings, *(extra_findings or [])],
        key=lambda f: (f.severity, f.kind, f.account_id or "", f.subject or "", f.message),
    )
    permission_sets = {ps.name: ps for ps in synthesis.permission_sets}
    ps_of_user: dict[tuple[str, str], list[str]] = {}
    group_members: dict[tuple[str, str], list[str]] = {}
    for inventory in inventories:
        for user in inventory.users:
            for group in user.groups:
                group_members.setdefault((inventory.account.account_id, group), []).append(
                    user.name
                )

    # Who an assignment gives access to: indexes, so a 10,000-user plan stays linear.
    users_of_identity: dict[tuple[str, str], list[str]] = {}
    for mapping in user_mappings:
        if mapping.status == MatchStatus.MATCHED and mapping.identity_user_id:
            key = (mapping.account_id, mapping.identity_user_id)
            users_of_identity.setdefault(key, []).append(mapping.iam_user)
    groups_of_identity_group: dict[tuple[str, str], list[str]] = {}
    for group_mapping in group_mappings:
        if group_mapping.status == MatchStatus.MATCHED and group_mapping.identity_group_id:
            key = (group_mapping.account_id, group_mapping.identity_group_id)
            groups_of_identity_group.setdefault(key, []).append(group_mapping.iam_group)

    blocked = _users_blocked(findings, group_members)

    def covered_users(assignment: Any) -> list[str]:
        """The IAM users an assignment gives access to: the user, or the group's members."""
        key = (assignment.account_id, assignment.principal_id)
        if assignment.principal_type == "USER":
            return users_of_identity.get(key, [])
        return [
            member
            for iam_group in groups_of_identity_group.get(key, [])
            for member in group_members.get((assignment.account_id, iam_group), [])
        ]

    # A blocked user's access is not provisioned: leave out the assignments that serve only
    # blocked users (or hand out a permission set a blocking finding names in that account),
    # and the permission sets no remaining assignment uses.
    blocked_sets = {
        (f.account_id, f.details["permission_set"])
        for f in findings
        if f.severity == "blocking" and f.account_id and f.details.get("permission_set")
    }
    kept_assignments, dropped_assignments = [], []
    for assignment in synthesis.assignments:
        covered = covered_users(assignment)
        if (assignment.account_id, assignment.permission_set_name) in blocked_sets or (
            covered and all((assignment.account_id, u) in blocked for u in covered)
        ):
            dropped_assignments.append(assignment)
        else:
            kept_assignments.append(assignment)
    used_sets = {a.permission_set_name for a in kept_assignments}
    dropped_sets = sorted(name for name in permission_sets if name not in used_sets)
    if dropped_assignments:
        permission_sets = {n: ps for n, ps in permission_sets.items() if n in used_sets}
        findings.append(
            Finding(
                severity="info",
                kind="blocked-access-left-out",
                message=f"{len(dropped_assignments)} account assignment(s) and "
                f"{len(dropped_sets)} permission set(s) of users with blocking errors are left "
                "out of this plan: they are planned once the errors are fixed",
                details={
                    "assignments": len(dropped_assignments),
                    "permission_sets": dropped_sets,
                },
            )
        )
    actions: list[PlanAction] = []
    assignment_ids: dict[tuple[str, str], list[str]] = {}  # (account, user) -> action ids
    provision_ids: dict[tuple[str, str], str] = {}

    ps_dicts = []
    set_action: dict[str, str] = {}  # name -> the action that creates or updates it
    updated: dict[str, OrgPermissionSet] = {}
    # Each set's definition is hashed once, not once per account it is provisioned to.
    definition_hash: dict[str, str] = {}
    for name in sorted(permission_sets):
        ps = permission_sets[name]
        definition = asdict(ps)
        ps_dicts.append(definition)
        definition_hash[name] = sha256_of(definition)
        known = (organization or {}).get(ps.fingerprint)
        changes = (
            definition_changes(definition, known.definition)
            if known is not None and known.ours and known.name == name
            else []
        )
        if changes:
            assert known is not None
            updated[name] = known
            set_action[name] = f"provision:update-permission-set:{name}"
            actions.append(
                PlanAction(
                    id=set_action[name],
                    stage=Stage.PROVISION,
                    kind="update-permission-set",
                    account_id=None,
                    target=name,
                    target_fingerprint=definition_hash[name],
                    params={
                        "definition": definition,
                        "previous": known.definition,
                        "changes": changes,
                        "created_by": known.created_by,
                        "reprovision_accounts": list(known.accounts),
                    },
                )
            )
            continue
        set_action[name] = f"provision:create-permission-set:{name}"
        actions.append(
            PlanAction(
                id=set_action[name],
                stage=Stage.PROVISION,
                kind="create-permission-set",
                account_id=None,
                target=name,
                target_fingerprint=definition_hash[name],
                params={"definition": definition},
            )
        )
    # Customer-managed policies still needed: those the kept permission sets reference, in
    # the accounts they are still provisioned to.
    references: dict[str, set[tuple[str, str]]] = {}
    for name, ps in permission_sets.items():
        refs = {(c["name"], c.get("path", "/")) for c in ps.customer_managed_policies}
        boundary = (ps.permissions_boundary or {}).get("customer_managed_policy_reference")
        if boundary:
            refs.add((boundary["name"], boundary.get("path", "/")))
        references[name] = refs
    references_of = {
        name: [{"name": n, "path": p} for n, p in refs] for name, refs in references.items()
    }
    needed = {
        (a.account_id, ref_name, ref_path)
        for a in kept_assignments
        for ref_name, ref_path in references.get(a.permission_set_name, set())
    }
    required: dict[str, list[dict[str, str]]] = {}
    required_list = []
    for account_id, policy_name, path in sorted(synthesis.required_customer_policies):
        if dropped_assignments and (account_id, policy_name, path) not in needed:
            continue
        required.setdefault(account_id, []).append({"name": policy_name, "path": path})
        required_list.append({"account_id": account_id, "name": policy_name, "path": path})

    assignments = sorted(
        kept_assignments,
        key=lambda a: (a.account_id, a.permission_set_name, a.principal_type, a.principal_id),
    )
    for account_id, name in sorted({(a.account_id, a.permission_set_name) for a in assignments}):
        action_id = f"provision:provision-permission-set:{name}:{account_id}"
        provision_ids[(account_id, name)] = action_id
        actions.append(
            PlanAction(
                id=action_id,
                stage=Stage.PROVISION,
                kind="provision-permission-set",
                account_id=account_id,
                target=name,
                target_fingerprint=sha256_of(
                    {"definition": definition_hash[name], "account": account_id}
                ),
                params={"required_customer_policies": required.get(account_id, [])},
                depends_on=[set_action[name]],
            )
        )
    # An updated set changes nothing in an account until it is provisioned there again
    # (sso-admin, ProvisionPermissionSet): every account that already has it, in any wave.
    for name, known in sorted(updated.items()):
        references = sorted(references_of.get(name, []), key=lambda r: (r["path"], r["name"]))
        for account_id in known.accounts:
            if (account_id, name) in provision_ids:
                continue
            action_id = f"provision:provision-permission-set:{name}:{account_id}"
            provision_ids[(account_id, name)] = action_id
            actions.append(
                PlanAction(
                    id=action_id,
                    stage=Stage.PROVISION,
                    kind="provision-permission-set",
                    account_id=account_id,
                    target=name,
                    target_fingerprint=sha256_of(
                        {"definition": definition_hash[name], "account": account_id}
                    ),
                    params={
                        "required_customer_policies": references,
                        "reprovision": f"updated by {set_action[name]}",
                    },
                    depends_on=[set_action[name]],
                )
            )
    assignment_dicts = []
    for assignment in assignments:
        raw = _shallow(assignment)  # flat strings: what asdict gives, without its deep copy
        assignment_dicts.append(raw)
        action_id = (
            f"provision:create-assignment:{assignment.account_id}:{assignment.permission_set_name}"
            f":{assignment.principal_type}:{assignment.principal_id}"
        )
        actions.append(
            PlanAction(
                id=action_id,
                stage=Stage.PROVISION,
                kind="create-assignment",
                account_id=assignment.account_id,
                target=f"{assignment.principal_type.lower()} {assignment.principal_name}"
                f" -> {assignment.permission_set_name}",
                target_fingerprint=sha256_of(raw),
                params=raw,
                depends_on=[provision_ids[(assignment.account_id, assignment.permission_set_name)]],
            )
        )
        # Who this assignment gives access to: the user itself, or the group's IAM members.
        for iam_user in covered_users(assignment):
            assignment_ids.setdefault((assignment.account_id, iam_user), []).append(action_id)
            ps_of_user.setdefault((assignment.account_id, iam_user), []).append(
                assignment.permission_set_name
            )

    users: list[UserPlan] = []
    bake_days = settings.get("bake_days", 14)
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        account_id = inventory.account.account_id
        for user in sorted(inventory.users, key=lambda u: u.name):
            fingerprint = user_fingerprint(user)
            mapping = mappings.get((account_id, user.name))
            outcome, reason = _outcome(user, mapping, blocked.get((account_id, user.name)))
            users.append(
                UserPlan(
                    account_id=account_id,
                    user=user.name,
                    user_class=str(user.user_class),
                    outcome=outcome,
                    reason=reason,
                    target_fingerprint=fingerprint,
                    identity=mapping.identity_user_name if mapping else None,
                    permission_sets=sorted(set(ps_of_user.get((account_id, user.name), [])))
                    if outcome == Outcome.MIGRATE
                    else [],
                )
            )
            if outcome not in (Outcome.MIGRATE, Outcome.RETIRE):
                continue
            prerequisites = assignment_ids.get((account_id, user.name), [])
            actions.extend(_disable_actions(account_id, user, fingerprint, prerequisites))
            actions.extend(_delete_actions(account_id, user, fingerprint, bake_days))

    actions.sort(key=lambda a: (STAGE_ORDER[a.stage], a.account_id or "", a.id))
    return Plan(
        migration=migration,
        inventory_snapshot_id=inventory_snapshot_id,
        mapping_run_id=mapping_run_id,
        settings=settings,
        users=users,
        actions=actions,
        permission_sets=ps_dicts,
        assignments=assignment_dicts,
        required_customer_policies=required_list,
        findings=findings,
        wave=wave,
    )


def _outcome(user: User, mapping: UserMapping | None, blocked: str | None) -> tuple[Outcome, str]:
    if user.user_class == UserClass.PROTECTED:
        return Outcome.SKIP_PROTECTED, user.class_reason
    if user.user_class == UserClass.WORKLOAD:
        return (
            Outcome.SKIP_WORKLOAD,
            "programmatic credentials only: needs an IAM role, not a person",
        )
    if blocked:
        return Outcome.SKIP_BLOCKED, blocked
    if user.user_class == UserClass.UNUSED:
        return Outcome.RETIRE, user.class_reason
    if mapping is None:
        return Outcome.SKIP_UNMATCHED, "no mapping result for this user (run iamc map)"
    if mapping.status == MatchStatus.AMBIGUOUS:
        return Outcome.SKIP_AMBIGUOUS, f"ambiguous: {', '.join(mapping.candidates)}"
    if mapping.status != MatchStatus.MATCHED:
        return Outcome.SKIP_UNMATCHED, mapping.reason or "no identity-store user matches"
    return Outcome.MIGRATE, f"maps to {mapping.identity_user_name} (rule {mapping.rule})"


def _disable_actions(
    account_id: str, user: User, fingerprint: str, prerequisites: list[str]
) -> list[PlanAction]:
    """Quarantine the user, then set every active credential Inactive, one action each.

    Only credentials that are Active get an action: one already Inactive stays as it is,
    and a rollback never turns it on. The console password is left alone (irreversible to
    delete); the quarantine's explicit deny makes it grant nothing.
    """
    base = f"disable:{account_id}:{user.name}"
    credentials: list[tuple[str, str, str, str]] = [
        # (kind, params key, id, id as people may see it)
        ("deactivate-access-key", "access_key_id", k.key_id, mask_key_id(k.key_id))
        for k in user.access_keys
        if k.status == "Active"
    ]
    credentials += [
        ("deactivate-ssh-public-key", "ssh_public_key_id", k.key_id, k.key_id)
        for k in user.ssh_public_keys
        if k.status == "Active"
    ]
    credentials += [
        ("deactivate-signing-certificate", "certificate_id", c.certificate_id, c.certificate_id)
        for c in user.signing_certificates
        if c.status == "Active"
    ]
    credentials += [
        (
            "deactivate-service-specific-credential",
            "credential_id",
            c.credential_id,
            c.credential_id,
        )
        for c in user.service_specific_credentials
        if c.status == "Active"
    ]
    actions = [
        PlanAction(
            # Ids are shown to people (plan files, status): never a whole key id in them.
            id=f"{base}:{kind}:{shown}",
            stage=Stage.DISABLE,
            kind=kind,
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={"user": user.name, key: credential_id},
            depends_on=list(prerequisites),
        )
        for kind, key, credential_id, shown in credentials
    ]
    actions.append(
        PlanAction(
            id=f"{base}:attach-quarantine-policy",
            stage=Stage.DISABLE,
            kind="attach-quarantine-policy",
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={
                "user": user.name,
                "policy_name": QUARANTINE_POLICY_NAME,
                "policy": QUARANTINE_POLICY,
            },
            depends_on=list(prerequisites),
        )
    )
    return actions


def _delete_actions(
    account_id: str, user: User, fingerprint: str, bake_days: int
) -> list[PlanAction]:
    base = f"delete:{account_id}:{user.name}"
    snapshot_id = f"{base}:00-snapshot-user"
    actions = [
        PlanAction(
            id=snapshot_id,
            stage=Stage.DELETE,
            kind="snapshot-user",
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={"user": user.name, "not_before_days_after_disable": bake_days},
            depends_on=[f"disable:{account_id}:{user.name}:attach-quarantine-policy"],
        )
    ]
    previous = snapshot_id
    for position, step in enumerate(TEARDOWN, start=1):
        items = step.items(user)
        if not items:
            continue
        action_id = f"{base}:{position:02d}-{step.kind}"
        actions.append(
            PlanAction(
                id=action_id,
                stage=Stage.DELETE,
                kind=step.kind,
                account_id=account_id,
                target=user.name,
                target_fingerprint=fingerprint,
                params={"user": user.name, "items": items},
                irreversible=True,
                depends_on=[previous],
            )
        )
        previous = action_id
    return actions

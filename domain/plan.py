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
from domain.records import (
    Finding,
    User,
)
from domain.stages import Stage

# Format 2: the hash covers what the plan does, not where it was computed from (format 1
# hashed the snapshot and mapping-run ids too, so re-running inventory or map with nothing
# changed made a new plan and orphaned its approval). Format-1 plans keep their old hash.
PLAN_FORMAT = 2
# Recorded in the plan for the reader, left out of its hash.
PROVENANCE_KEYS = ("inventory_snapshot_id", "mapping_run_id", "usage_read_id")


def hashed_content(content: dict[str, Any]) -> dict[str, Any]:
    """The part of a plan's content its hash covers: everything but its provenance."""
    if content.get("format", 1) < 2:
        return content
    return {k: v for k, v in content.items() if k not in PROVENANCE_KEYS}


class Outcome(StrEnum):
    """What the plan does with one IAM user."""

    MIGRATE = "migrate"  # provision its access in Identity Center, then disable and delete
    RETIRE = "retire"  # unused: disable and delete, nothing to provision
    SKIP_PROTECTED = "skip-protected"
    # A workload user whose runtime is placed (domain.workloads): the replace stage gives the
    # runtime a role, then disable and delete retire the user once its key is quiet.
    REPLACE_WITH_ROLE = "replace-with-role"
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
    # Least privilege from use ([least_privilege]; domain.least_privilege): the mode, the
    # window, the hash of the usage read relied on (domain.usage.UsageRead.content_hash), the
    # per-set report and, in trim mode, each person's losses. None: no usage read was used.
    least_privilege: dict[str, Any] | None = None
    # The usage read the plan was computed from (provenance, like the snapshot id).
    usage_read_id: int | None = None
    # A drift plan (``iamc drift``, domain.drift): when it was read, the accounts read and
    # those that could not be, and what drifted. None: a plan of the migration (or a wave).
    # A drift plan restores what earlier plans did; it is no wave's plan and supersedes none.
    drift: dict[str, Any] | None = None

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
            "users": [flat_fields(u) for u in self.users],
            "actions": [flat_fields(a) for a in self.actions],
            "permission_sets": self.permission_sets,
            "assignments": self.assignments,
            "required_customer_policies": self.required_customer_policies,
            "findings": [asdict(f) for f in self.findings],
            # Only in wave plans, so a spec without waves keeps the content (and hash) it had.
            **({"wave": self.wave} if self.wave is not None else {}),
            # Only when usage was read, so earlier plans keep their content (and hash).
            **(
                {"least_privilege": self.least_privilege, "usage_read_id": self.usage_read_id}
                if self.least_privilege is not None
                else {}
            ),
            # Only in drift plans, so every other plan keeps its content (and hash).
            **({"drift": self.drift} if self.drift is not None else {}),
        }

    @property
    def is_drift(self) -> bool:
        """A plan that puts back what drifted (``iamc drift``), not a plan of the migration."""
        return self.drift is not None

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
            actions=[PlanAction(**{**a, "stage": Stage(a["stage"])}) for a in content["actions"]],
            permission_sets=content["permission_sets"],
            assignments=content["assignments"],
            required_customer_policies=content["required_customer_policies"],
            findings=[Finding(**f) for f in content["findings"]],
            format=content.get("format", 1),
            wave=content.get("wave"),
            least_privilege=content.get("least_privilege"),
            usage_read_id=content.get("usage_read_id"),
            drift=content.get("drift"),
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


def flat_fields(record: Any) -> dict[str, Any]:
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
    plan would do. Everything that changes what a disable or delete touches is in. The keys
    are spelled out, not read from ``domain.credentials``: a plan stored by an earlier version
    is compared with this fingerprint of the live user, so its shape must not move.
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

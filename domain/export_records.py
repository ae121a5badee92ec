"""What a migration made, as AWS has it now: the neutral records every export writer reads.

``engine.export`` fills them once from the journal and live AWS; ``domain.terraform_export``
and ``domain.cloudformation_export`` turn the same records into their own text, so the two
exports can't disagree about what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PermissionSetRecord:
    """A permission set as Identity Center has it now."""

    name: str
    arn: str
    description: str
    session_duration: str | None
    relay_state: str | None
    inline_policy: dict[str, Any] | None
    aws_managed_policy_arns: tuple[str, ...] = ()
    customer_managed_policies: tuple[dict[str, str], ...] = ()  # {"name", "path"}
    # {"managed_policy_arn": ...} or {"customer_managed_policy_reference": {"name", "path"}}
    permissions_boundary: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AssignmentRecord:
    """An account assignment that is there now."""

    account_id: str
    permission_set_name: str
    permission_set_arn: str
    principal_type: str  # USER | GROUP
    principal_id: str
    principal_name: str  # for names; the id when the journal has no name


@dataclass(frozen=True)
class RoleRecord:
    """A workload role the replace stage created, in its member account."""

    account_id: str
    name: str
    path: str
    arn: str
    assume_role_policy: dict[str, Any]
    description: str
    max_session_duration: int
    permissions_boundary: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolePolicyRecord:
    """An inline policy the replace stage put on one of its roles."""

    account_id: str
    role: str
    name: str
    document: dict[str, Any]


@dataclass(frozen=True)
class RoleAttachmentRecord:
    """A managed policy the replace stage attached to one of its roles."""

    account_id: str
    role: str
    policy_arn: str


@dataclass(frozen=True)
class InstanceProfileRecord:
    """An instance profile the replace stage created."""

    account_id: str
    name: str
    path: str
    roles: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OidcProviderRecord:
    """An OIDC provider the replace stage created (an adopted one is someone else's)."""

    account_id: str
    arn: str
    url: str
    client_id_list: tuple[str, ...]
    thumbprint_list: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)


WorkloadRecord = (
    RoleRecord
    | RolePolicyRecord
    | RoleAttachmentRecord
    | InstanceProfileRecord
    | OidcProviderRecord
)


@dataclass
class ExportRecords:
    """Everything an export writes, and what it left out and why.

    ``notes`` are for the operator (in the journal, gone from AWS); ``workload_notes``
    (account, text) are written beside the workload roles (an adopted OIDC provider, not
    exported).
    """

    migration: str
    instance_arn: str
    region: str | None
    member_role: str
    permission_sets: list[PermissionSetRecord] = field(default_factory=list)
    assignments: list[AssignmentRecord] = field(default_factory=list)
    workloads: list[WorkloadRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workload_notes: list[tuple[str, str]] = field(default_factory=list)

    def workload_accounts(self) -> list[str]:
        """The member accounts the workload records live in."""
        return sorted({w.account_id for w in self.workloads})

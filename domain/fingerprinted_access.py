"""IAM access resolved and fingerprinted per account: what synthesis shares as a permission set."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from domain.access import effective_access
from domain.policy_documents import (
    DEFAULT_POLICY_VERSION,
    canonical_json,
    policy_fingerprint,
    sha256_hex,
    statement_pairs,
)
from domain.records import AccountInventory, Group, InlinePolicy, ManagedPolicy, User


@dataclass(frozen=True)
class PolicyRef:
    """A managed policy as the fingerprint sees it: ARN for AWS's, name+path+document else."""

    arn: str
    name: str
    path: str
    aws_managed: bool
    document_hash: str | None = None

    def identity(self) -> Any:
        if self.aws_managed:
            return {"arn": self.arn}
        return {"name": self.name, "path": self.path, "document": self.document_hash}


@dataclass
class FingerprintedAccess:
    """The policies an access grants, in a canonical order, and the fingerprint that names it."""

    aws_managed: list[PolicyRef]
    customer_managed: list[PolicyRef]
    statements: dict[str, dict[str, Any]]  # fingerprint key -> shown statement
    boundary: PolicyRef | None
    inline_names: list[str]
    fingerprint: str = ""

    @property
    def grants_anything(self) -> bool:
        return bool(self.aws_managed or self.customer_managed or self.statements)


@dataclass
class Holder:
    """Who receives an access in one account: an identity user or an identity group."""

    account_id: str
    principal_type: str
    principal_id: str
    principal_name: str
    subject: str  # the IAM user or group it comes from
    access: FingerprintedAccess
    groups: tuple[str, ...]  # IAM groups whose policies are part of the access
    own_policies: bool  # the IAM user's own attached or inline policies are part of it

    @property
    def reason(self) -> str:
        return f"{'user' if self.principal_type == 'USER' else 'group'} {self.subject}"

    def sort_key(self) -> tuple[str, str, str]:
        return (self.account_id, self.principal_type, self.subject)


def _is_aws_managed(arn: str) -> bool:
    # Also covers other partitions (arn:aws-us-gov:iam::aws:policy/...).
    return ":iam::aws:policy/" in arn


class AccountAccess:
    """One account's policies, resolved and fingerprinted once each however many users share."""

    def __init__(self, inventory: AccountInventory):
        self.account_id = inventory.account.account_id
        self.inventory = inventory
        self.policies: dict[str, ManagedPolicy] = {p.arn: p for p in inventory.managed_policies}
        self.groups: dict[str, Group] = {g.name: g for g in inventory.groups}
        self._refs: dict[str, PolicyRef | None] = {}
        # (source, policy name) -> (statement pairs, whether merging changes its meaning)
        self._inline: dict[tuple[str, str], tuple[list[tuple[str, dict[str, Any]]], bool]] = {}
        self.unresolved: dict[str, set[str]] = defaultdict(set)  # arn -> subjects needing it
        self.old_versions: dict[str, set[str]] = defaultdict(set)  # policy label -> subjects

    def ref(self, arn: str, subject: str) -> PolicyRef | None:
        if arn not in self._refs:
            self._refs[arn] = self._resolve(arn)
        resolved = self._refs[arn]
        if resolved is None:
            self.unresolved[arn].add(subject)
        return resolved

    def _resolve(self, arn: str) -> PolicyRef | None:
        record = self.policies.get(arn)
        if _is_aws_managed(arn):
            # AWS-managed policies are the same document in every account: the ARN is enough.
            name = record.name if record else arn.rsplit("/", 1)[-1]
            path = record.path if record else "/"
            return PolicyRef(arn=arn, name=name, path=path, aws_managed=True)
        if record is None or record.document is None:
            return None
        return PolicyRef(
            arn=arn,
            name=record.name,
            path=record.path or "/",
            aws_managed=False,
            document_hash=policy_fingerprint(record.document),
        )

    def statements(
        self, source: str, policy: InlinePolicy, subject: str
    ) -> list[tuple[str, dict[str, Any]]]:
        key = (source, policy.name)
        if key not in self._inline:
            version = policy.document.get("Version")
            # Without Version (or with 2008-10-17) "${...}" is literal text; merged under
            # 2012-10-17 it becomes a policy variable (IAM JSON policy elements, "Version").
            changes = version != DEFAULT_POLICY_VERSION and "${" in canonical_json(policy.document)
            self._inline[key] = (statement_pairs(policy.document), changes)
        pairs, changes = self._inline[key]
        if changes:
            self.old_versions[f"{source}/{policy.name}"].add(subject)
        return pairs

    def access(
        self, user: User, groups: list[Group], *, with_boundary: bool
    ) -> FingerprintedAccess | None:
        """The access a user gets from its own policies and ``groups``; None if unresolvable."""
        found = effective_access(user, groups)
        refs = [self.ref(arn, f"user {user.name}") for arn in found.managed_policy_arns]
        boundary = None
        if with_boundary and found.boundary_arn:
            boundary = self.ref(found.boundary_arn, f"user {user.name}")
            if boundary is None:
                return None
        if any(ref is None for ref in refs):
            return None
        pairs: list[tuple[str, dict[str, Any]]] = []
        names = []
        for source, policy in found.inline_policies:
            label = f"user:{user.name}" if source == "user" else source
            pairs.extend(self.statements(label, policy, f"user {user.name}"))
            names.append(policy.name)
        return build_access([r for r in refs if r is not None], pairs, boundary, names)

    def group_access(self, group: Group) -> FingerprintedAccess | None:
        refs = [self.ref(p.arn, f"group {group.name}") for p in group.attached_policies]
        if any(ref is None for ref in refs):
            return None
        pairs = [
            pair
            for policy in group.inline_policies
            for pair in self.statements(f"group:{group.name}", policy, f"group {group.name}")
        ]
        names = [p.name for p in group.inline_policies]
        return build_access([r for r in refs if r is not None], pairs, None, names)


def build_access(
    refs: list[PolicyRef],
    pairs: list[tuple[str, dict[str, Any]]],
    boundary: PolicyRef | None,
    inline_names: list[str],
) -> FingerprintedAccess:
    unique = {ref.arn: ref for ref in refs}.values()
    aws = sorted((r for r in unique if r.aws_managed), key=lambda r: r.arn)
    customer = sorted((r for r in unique if not r.aws_managed), key=lambda r: (r.path, r.name))
    statements: dict[str, dict[str, Any]] = {}
    for key, shown in pairs:
        # Same statement from two policies: keep the smallest shown form (order-independent).
        if key not in statements or canonical_json(shown) < canonical_json(statements[key]):
            statements[key] = shown
    access = FingerprintedAccess(
        aws_managed=aws,
        customer_managed=customer,
        statements={key: statements[key] for key in sorted(statements)},
        boundary=boundary,
        inline_names=sorted(set(inline_names)),
    )
    access.fingerprint = sha256_hex(
        canonical_json(
            {
                "aws_managed": [r.arn for r in aws],
                "customer_managed": [r.identity() for r in customer],
                "inline": list(access.statements),
                "boundary": boundary.identity() if boundary else None,
            }
        )
    )
    return access

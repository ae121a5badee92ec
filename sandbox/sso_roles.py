"""The AWSReservedSSO_* roles Identity Center keeps in member accounts, which moto never makes."""

# "When you assign a permission set, IAM Identity Center creates corresponding IAM Identity
# Center-controlled IAM roles in each account, and attaches the policies specified in the
# permission set to those roles. [...] As you modify the permission set, IAM Identity Center
# ensures that the corresponding IAM policies and roles are updated accordingly."
# (IAM Identity Center User Guide, "IAM roles created by IAM Identity Center",
# https://docs.aws.amazon.com/singlesignon/latest/userguide/identity-center-and-iam-roles.html)

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from typing import Any

from sandbox.wire import iam_backend

log = logging.getLogger(__name__)

ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
INLINE_POLICY_NAME = "AwsSSOInlinePolicy"
# IAM quotas: 10 managed policies per role by default; Identity Center allows 20 per
# permission set, so provisioning a larger set fails in the account
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
MANAGED_POLICIES_PER_ROLE = 10

_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


def role_suffix(account_id: str, permission_set_arn: str) -> str:
    """16 lowercase hex digits, the same every time for one account and permission set."""
    return hashlib.sha256(f"{account_id}|{permission_set_arn}".encode()).hexdigest()[:16]


def role_name(permission_set: Any, account_id: str) -> str:
    suffix = role_suffix(account_id, permission_set.permission_set_arn)
    return f"AWSReservedSSO_{permission_set.name}_{suffix}"


def saml_provider_name(account_id: str) -> str:
    suffix = hashlib.sha256(f"saml|{account_id}".encode()).hexdigest()[:16]
    return f"AWSSSO_{suffix}_DO_NOT_DELETE"


def _trust_policy(account_id: str) -> str:
    provider = f"arn:aws:iam::{account_id}:saml-provider/{saml_provider_name(account_id)}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider},
                    "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
                    "Condition": {
                        "StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}
                    },
                }
            ],
        }
    )


def _session_seconds(duration: str | int | None) -> int:
    if isinstance(duration, int):  # moto's default when none was given
        return duration or 3600
    match = _DURATION.match(duration or "")
    if not match or not any(match.groups()):
        return 3600
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def definition_digest(permission_set: Any, boundary: dict[str, Any] | None = None) -> str:
    """What a permission set would put in a role: changes when the set is edited (its
    boundary is kept beside moto's set, in ``SsoRoles``)."""
    return json.dumps(
        [
            permission_set.description,
            permission_set.session_duration,
            permission_set.inline_policy or "",
            sorted(p.arn for p in permission_set.managed_policies),
            sorted((r.name, r.path or "/") for r in permission_set.customer_managed_policies),
            boundary,
        ],
        default=str,
    )


def _customer_policy_arn(account_id: str, reference: Any) -> str:
    path = reference.path or "/"
    return f"arn:aws:iam::{account_id}:policy{path}{reference.name}"


def boundary_arn(boundary: dict[str, Any], account_id: str) -> str:
    """The IAM policy a set's boundary (sso-admin's ``PermissionsBoundary``) is in an account:
    the AWS-managed ARN, or the customer-managed policy of that name and path there."""
    if boundary.get("ManagedPolicyArn"):
        return str(boundary["ManagedPolicyArn"])
    ref = boundary["CustomerManagedPolicyReference"]
    return f"arn:aws:iam::{account_id}:policy{ref.get('Path') or '/'}{ref['Name']}"


class SsoRoles:
    """Creates, updates and deletes the roles of provisioned permission sets in member accounts."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # (account id, permission set ARN) pairs provisioned so far.
        self._provisioned: set[tuple[str, str]] = set()
        # The definition each pair was last provisioned with (definition_digest).
        self._digests: dict[tuple[str, str], str] = {}
        # Permission set ARN -> its PermissionsBoundary as sso-admin takes it (moto has none).
        self._boundaries: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        with self._lock:
            self._provisioned.clear()
            self._digests.clear()
            self._boundaries.clear()

    def boundary(self, permission_set_arn: str) -> dict[str, Any] | None:
        """The set's permissions boundary (``PermissionsBoundary``), None without one."""
        with self._lock:
            return self._boundaries.get(permission_set_arn)

    def set_boundary(self, permission_set_arn: str, boundary: dict[str, Any] | None) -> None:
        """Put (or, with None, delete) a set's boundary; roles change when it is provisioned."""
        with self._lock:
            if boundary is None:
                self._boundaries.pop(permission_set_arn, None)
            else:
                self._boundaries[permission_set_arn] = boundary

    def provisioned_accounts(self, permission_set_arn: str) -> list[str]:
        with self._lock:
            return sorted(a for a, ps in self._provisioned if ps == permission_set_arn)

    def provisioned_to(self, account_id: str) -> list[str]:
        """ARNs of the permission sets provisioned to one account."""
        with self._lock:
            return sorted(ps for a, ps in self._provisioned if a == account_id)

    def is_latest(self, permission_set: Any, account_id: str) -> bool:
        """Whether the account's role was provisioned from the set as it is now.

        Editing a permission set changes nothing in the accounts until it is provisioned
        again; until then AWS lists it there as ``LATEST_PERMISSION_SET_NOT_PROVISIONED``
        (API_ListPermissionSetsProvisionedToAccount, ``ProvisioningStatus``).
        """
        key = (account_id, permission_set.permission_set_arn)
        with self._lock:
            return self._digests.get(key) == definition_digest(
                permission_set, self._boundaries.get(permission_set.permission_set_arn)
            )

    def check(self, permission_set: Any, account_id: str) -> str | None:
        """Why provisioning ``permission_set`` to ``account_id`` would fail, or None."""
        backend = iam_backend(account_id)
        managed = len(permission_set.managed_policies) + len(
            permission_set.customer_managed_policies
        )
        if managed > MANAGED_POLICIES_PER_ROLE:
            return (
                "LimitExceeded: Cannot exceed quota for PoliciesPerRole: "
                f"{MANAGED_POLICIES_PER_ROLE}"
            )
        for reference in permission_set.customer_managed_policies:
            arn = _customer_policy_arn(account_id, reference)
            if arn not in backend.managed_policies:
                # Customer-managed policy references must exist, same name and path, in
                # every account the set is provisioned to (Identity Center user guide,
                # "Customer managed policies").
                return f"Received a 404 status error: Not supported policy {arn}."
        boundary = self.boundary(permission_set.permission_set_arn)
        if boundary and boundary.get("CustomerManagedPolicyReference"):
            arn = boundary_arn(boundary, account_id)
            if arn not in backend.managed_policies:
                # A customer-managed boundary is referenced by name and path too: "IAM
                # Identity Center fails to assign the permission set if the policy doesn't
                # exist in your member account" (userguide, "Use IAM policies in permission
                # sets", https://docs.aws.amazon.com/singlesignon/latest/userguide/howtocmp.html).
                return f"Received a 404 status error: Not supported policy {arn}."
        return None

    def provision(self, permission_set: Any, account_id: str) -> str:
        """Create or update the set's role in the account; return the role name."""
        backend = iam_backend(account_id)
        name = role_name(permission_set, account_id)
        with self._lock:
            if saml_provider_name(account_id) not in backend.saml_providers:
                backend.create_saml_provider(saml_provider_name(account_id), "<EntityDescriptor/>")
            role = next((r for r in list(backend.roles.values()) if r.name == name), None)
            trust = _trust_policy(account_id)
            seconds = _session_seconds(permission_set.session_duration)
            boundary = self.boundary(permission_set.permission_set_arn)
            boundary_policy = None if boundary is None else boundary_arn(boundary, account_id)
            if role is None:
                role = backend.create_role(
                    role_name=name,
                    assume_role_policy_document=trust,
                    path=ROLE_PATH,
                    permissions_boundary=boundary_policy,
                    description="",
                    tags=[],
                    max_session_duration=str(seconds),
                )
                log.info("created %s in %s", name, account_id)
            else:
                role.assume_role_policy_document = trust
                role.max_session_duration = seconds
                # The set's boundary becomes the role's IAM permissions boundary (GetRole's
                # PermissionsBoundary); provisioning again puts back one changed by hand.
                role.permissions_boundary_arn = boundary_policy
            wanted = [p.arn for p in permission_set.managed_policies] + [
                _customer_policy_arn(account_id, ref)
                for ref in permission_set.customer_managed_policies
            ]
            for arn in list(role.managed_policies):
                if arn not in wanted:
                    backend.detach_role_policy(arn, name)
            for arn in wanted:
                if arn not in role.managed_policies:
                    backend.attach_role_policy(arn, name)
            if permission_set.inline_policy:
                backend.put_role_policy(name, INLINE_POLICY_NAME, permission_set.inline_policy)
            elif INLINE_POLICY_NAME in role.policies:
                backend.delete_role_policy(name, INLINE_POLICY_NAME)
            self._provisioned.add((account_id, permission_set.permission_set_arn))
            self._digests[(account_id, permission_set.permission_set_arn)] = definition_digest(
                permission_set, self._boundaries.get(permission_set.permission_set_arn)
            )
        return name

    def remove(self, permission_set_arn: str, permission_set_name: str, account_id: str) -> None:
        """Delete the set's role from the account (its policies first, as IAM requires)."""
        backend = iam_backend(account_id)
        suffix = role_suffix(account_id, permission_set_arn)
        name = f"AWSReservedSSO_{permission_set_name}_{suffix}"
        with self._lock:
            self._provisioned.discard((account_id, permission_set_arn))
            self._digests.pop((account_id, permission_set_arn), None)
            role = next((r for r in list(backend.roles.values()) if r.name == name), None)
            if role is None:
                return
            for arn in list(role.managed_policies):
                backend.detach_role_policy(arn, name)
            for policy_name in list(role.policies):
                backend.delete_role_policy(name, policy_name)
            backend.delete_role(name)
            log.info("deleted %s from %s", name, account_id)

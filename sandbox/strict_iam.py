"""The IAM rules moto lacks: DeleteUser refuses while the user still has dependent objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sandbox.service_credentials import ServiceCredentials
from sandbox.strict_settings import Strictness
from sandbox.wire import Call, Reply, iam_backend, xml_error

# What DeleteUser requires removed first, in the order AWS documents for deleting a user
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli),
# with a message in the style of AWS's DeleteConflict errors.
DELETE_USER_DEPENDENTS: tuple[tuple[str, str], ...] = (
    ("login-profile", "Cannot delete entity, must delete login profile first."),
    ("access-keys", "Cannot delete entity, must delete access keys first."),
    ("signing-certificates", "Cannot delete entity, must delete signing certificates first."),
    ("ssh-public-keys", "Cannot delete entity, must delete SSH public keys first."),
    (
        "service-specific-credentials",
        "Cannot delete entity, must delete service specific credentials first.",
    ),
    ("mfa-devices", "Cannot delete entity, must delete MFA device first."),
    ("inline-policies", "Cannot delete entity, must delete policies first."),
    ("attached-policies", "Cannot delete entity, must detach all policies first."),
    ("groups", "Cannot delete entity, must remove user from all groups first."),
    ("permissions-boundary", "Cannot delete entity, must delete permissions boundary first."),
)


# GetAccountSummary's entry for RolesQuota in moto's XML answer.
_ROLES_QUOTA = re.compile(r"(<key>RolesQuota</key>\s*<value>)\d+(</value>)")


class IamRules:
    """DeleteUser as AWS answers it: DeleteConflict while anything depends on the user."""

    def __init__(
        self,
        strictness: Strictness,
        service_credentials: ServiceCredentials,
        forward: Callable[[Call], Reply],
    ):
        self.strictness = strictness
        self.service_credentials = service_credentials
        self._forward = forward

    def handlers(self) -> dict[str, Callable[[Call], Reply | None]]:
        return {
            "iam:DeleteUser": self.delete_user,
            "iam:GetAccountSummary": self.get_account_summary,
            "iam:CreateRole": self.create_role,
        }

    def get_account_summary(self, call: Call) -> Reply | None:
        """moto's summary, with the configured roles quota (moto always says 1,000)."""
        reply = self._forward(call)
        if reply.status != 200:
            return reply
        body = _ROLES_QUOTA.sub(
            rf"\g<1>{self.strictness.roles_quota}\g<2>", reply.body.decode("utf-8")
        )
        return Reply(200, body.encode("utf-8"), reply.content_type, reply.extra)

    def create_role(self, call: Call) -> Reply | None:
        """IAM refuses a role beyond the account's roles quota (IAM and AWS STS quotas)."""
        backend = iam_backend(call.account_id, call.region)
        if len(backend.roles) < self.strictness.roles_quota:
            return None
        return xml_error(
            "iam",
            "LimitExceeded",
            f"Cannot exceed quota for RolesPerAccount: {self.strictness.roles_quota}",
            409,
        )

    def delete_user(self, call: Call) -> Reply | None:
        backend = iam_backend(call.account_id, call.region)
        user = backend.users.get(call.form().get("UserName", ""))
        if user is None:
            return None  # moto answers NoSuchEntity
        if self.strictness.delete_conflicts:
            for dependent, message in DELETE_USER_DEPENDENTS:
                if dependent == "service-specific-credentials":
                    has = self.service_credentials.user_has(call.account_id, user.name)
                else:
                    has = _user_has(backend, user, dependent)
                if has:
                    return xml_error("iam", "DeleteConflict", message, 409)
        reply = self._forward(call)
        if reply.status == 200:
            # A deleted user's service-specific credentials go with it.
            self.service_credentials.forget_user(call.account_id, user.name)
        return reply


def _user_has(backend: Any, user: Any, dependent: str) -> bool:
    """Whether a moto IAM user still has one kind of object DeleteUser refuses to orphan."""
    if dependent == "login-profile":
        return user.password is not None
    if dependent == "access-keys":
        return bool(user.access_keys)
    if dependent == "signing-certificates":
        return bool(user.signing_certificates)
    if dependent == "ssh-public-keys":
        return bool(user.ssh_public_keys)
    if dependent == "service-specific-credentials":
        # moto 5.2.5 does not model them: the middleware keeps them (ServiceCredentials).
        return bool(getattr(user, "service_specific_credentials", None))
    if dependent == "mfa-devices":
        return bool(user.mfa_devices)
    if dependent == "inline-policies":
        return bool(user.policies)
    if dependent == "attached-policies":
        return bool(user.managed_policies)
    if dependent == "groups":
        return bool(backend.get_groups_for_user(user.name))
    if dependent == "permissions-boundary":
        # moto 5.2.5 has no user permissions boundary (PutUserPermissionsBoundary).
        return bool(getattr(user, "permissions_boundary_arn", None))
    raise ValueError(dependent)

"""The STS rule moto lacks: AssumeRole of a role that does not exist is refused."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.strict_settings import Strictness
from sandbox.wire import Call, Reply, iam_backend, xml_error


class StsRules:
    """AssumeRole as AWS answers it (moto hands out credentials for any role ARN)."""

    def __init__(self, strictness: Strictness):
        self.strictness = strictness

    def handlers(self) -> dict[str, Callable[[Call], Reply | None]]:
        return {"sts:AssumeRole": self.assume_role}

    def assume_role(self, call: Call) -> Reply | None:
        if not self.strictness.assume_role_checks:
            return None
        role_arn = call.form().get("RoleArn", "")
        parts = role_arn.split(":")
        if len(parts) != 6 or not parts[5].startswith("role/"):
            return None  # moto answers the validation error
        account_id, role_name = parts[4], parts[5].rsplit("/", 1)[-1]
        backend = iam_backend(account_id, call.region)
        if any(role.name == role_name for role in backend.roles.values()):
            return None
        # AWS answers a missing role (or a trust policy that excludes the caller) the same
        # way, without saying which (STS API reference, AssumeRole errors).
        return xml_error(
            "sts",
            "AccessDenied",
            f"User: arn:aws:iam::{call.account_id}:user/sandbox is not authorized to perform: "
            f"sts:AssumeRole on resource: {role_arn}",
            403,
        )

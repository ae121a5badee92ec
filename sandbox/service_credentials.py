"""IAM service-specific credentials (CodeCommit, Keyspaces, Bedrock), which moto 5.2.5 lacks."""

from __future__ import annotations

import base64
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.wire import Call, Reply, iam_backend, query_reply, xml_error

# Services that issue service-specific credentials (IAM API reference,
# CreateServiceSpecificCredential): Git for CodeCommit, Amazon Keyspaces, Bedrock API keys.
SUPPORTED_SERVICES = frozenset(
    {"codecommit.amazonaws.com", "cassandra.amazonaws.com", "bedrock.amazonaws.com"}
)
# Bedrock API keys answer with an alias and a secret instead of a user name and password.
_ALIAS_SERVICES = frozenset({"bedrock.amazonaws.com"})
# IAM quotas: two service-specific credentials per user per service.
PER_USER_PER_SERVICE = 2

_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class ServiceCredential:
    credential_id: str
    user_name: str
    service_name: str
    status: str
    create_date: datetime
    service_user_name: str | None = None
    service_credential_alias: str | None = None
    expiration_date: datetime | None = None
    secret: str = ""

    def metadata(self) -> dict[str, Any]:
        """What List answers: everything but the password or secret."""
        out: dict[str, Any] = {
            "UserName": self.user_name,
            "Status": self.status,
            "CreateDate": self.create_date,
            "ServiceSpecificCredentialId": self.credential_id,
            "ServiceName": self.service_name,
        }
        if self.service_user_name:
            out["ServiceUserName"] = self.service_user_name
        if self.service_credential_alias:
            out["ServiceCredentialAlias"] = self.service_credential_alias
        if self.expiration_date:
            out["ExpirationDate"] = self.expiration_date
        return out

    def with_secret(self) -> dict[str, Any]:
        """What Create and Reset answer: the only time AWS shows the password."""
        out = self.metadata()
        if self.service_credential_alias:
            out["ServiceCredentialSecret"] = self.secret
        else:
            out["ServicePassword"] = self.secret
        return out


class ServiceCredentials:
    """Service-specific credentials per account, answering IAM's five operations.

    Args:
        now: The sandbox clock (naive UTC, as moto keeps dates).
        caller_user: The IAM user name that signed a call, if an IAM user's key signed it;
            AWS uses it when ``UserName`` is omitted.
    """

    def __init__(
        self, now: Callable[[], datetime], caller_user: Callable[[Call], str | None]
    ) -> None:
        self._now = now
        self._caller_user = caller_user
        self._lock = threading.Lock()
        self._by_account: dict[str, dict[str, ServiceCredential]] = {}

    def handlers(self) -> dict[str, Callable[[Call], Reply | None]]:
        return {
            "iam:CreateServiceSpecificCredential": self._create,
            "iam:ListServiceSpecificCredentials": self._list,
            "iam:UpdateServiceSpecificCredential": self._update,
            "iam:ResetServiceSpecificCredential": self._reset,
            "iam:DeleteServiceSpecificCredential": self._delete,
        }

    def reset(self) -> None:
        with self._lock:
            self._by_account.clear()

    def user_has(self, account_id: str, user_name: str) -> bool:
        with self._lock:
            creds = self._by_account.get(account_id, {}).values()
            return any(c.user_name == user_name for c in creds)

    def forget_user(self, account_id: str, user_name: str) -> None:
        """Drop a deleted user's credentials, as AWS does when the user goes."""
        with self._lock:
            creds = self._by_account.get(account_id, {})
            for cred_id in [i for i, c in creds.items() if c.user_name == user_name]:
                del creds[cred_id]

    # -- operations -------------------------------------------------------------------------

    def _user(self, call: Call, params: dict[str, str]) -> tuple[str | None, Reply | None]:
        name = params.get("UserName") or self._caller_user(call)
        if not name:
            return None, None
        if name not in iam_backend(call.account_id, call.region).users:
            return None, _no_such_entity(f"The user with name {name} cannot be found.")
        return name, None

    def _create(self, call: Call) -> Reply:
        params = call.form()
        name, error = self._user(call, params)
        if error:
            return error
        if not name:
            return _no_such_entity("The user with name  cannot be found.")
        service = params.get("ServiceName", "")
        if service not in SUPPORTED_SERVICES:
            return xml_error(
                "iam", "NotSupportedService", f"The service {service} is not supported.", 404
            )
        now = self._now().replace(microsecond=0)
        age = params.get("CredentialAgeDays")
        cred = ServiceCredential(
            credential_id="ACCA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17)),
            user_name=name,
            service_name=service,
            status="Active",
            create_date=now,
            expiration_date=now + timedelta(days=int(age)) if age else None,
            secret=_new_secret(),
        )
        if service in _ALIAS_SERVICES:
            cred.service_credential_alias = (
                f"BedrockAPIKey-{secrets.token_hex(2)}-at-{call.account_id}"
            )
        else:
            cred.service_user_name = f"{name}-at-{call.account_id}"
        with self._lock:
            creds = self._by_account.setdefault(call.account_id, {})
            same = [c for c in creds.values() if c.user_name == name and c.service_name == service]
            if len(same) >= PER_USER_PER_SERVICE:
                return xml_error(
                    "iam",
                    "LimitExceeded",
                    "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: "
                    f"{PER_USER_PER_SERVICE}",
                    409,
                )
            creds[cred.credential_id] = cred
            answer = cred.with_secret()
        return query_reply("CreateServiceSpecificCredential", {"ServiceSpecificCredential": answer})

    def _list(self, call: Call) -> Reply:
        params = call.form()
        service = params.get("ServiceName")
        if service and service not in SUPPORTED_SERVICES:
            return xml_error(
                "iam", "NotSupportedService", f"The service {service} is not supported.", 404
            )
        all_users = params.get("AllUsers", "").lower() == "true"
        if all_users and params.get("UserName"):
            # "This parameter cannot be specified together with UserName" (IAM API reference,
            # ListServiceSpecificCredentials); moto has no such call to compare with.
            return xml_error(
                "iam",
                "InvalidInput",
                "AllUsers cannot be specified together with UserName.",
                400,
            )
        name: str | None = None
        if not all_users:
            name, error = self._user(call, params)
            if error:
                return error
            if not name:
                # Neither UserName nor an IAM user's key (root or a role): nobody's.
                return query_reply(
                    "ListServiceSpecificCredentials",
                    {"ServiceSpecificCredentials": [], "IsTruncated": False},
                )
        with self._lock:
            found = [
                c.metadata()
                for c in self._by_account.get(call.account_id, {}).values()
                if (all_users or c.user_name == name) and (not service or c.service_name == service)
            ]
        start = int(params.get("Marker") or 0)
        size = int(params.get("MaxItems") or 100)
        page = found[start : start + size]
        result: dict[str, Any] = {"ServiceSpecificCredentials": page, "IsTruncated": False}
        if start + size < len(found):
            result.update(IsTruncated=True, Marker=str(start + size))
        return query_reply("ListServiceSpecificCredentials", result)

    def _find(self, call: Call, params: dict[str, str]) -> tuple[Any, Reply | None]:
        name, error = self._user(call, params)
        if error:
            return None, error
        cred_id = params.get("ServiceSpecificCredentialId", "")
        with self._lock:
            cred = self._by_account.get(call.account_id, {}).get(cred_id)
        if cred is None or (name and cred.user_name != name):
            return None, _no_such_entity(
                f"The Service Specific Credential with id {cred_id} cannot be found."
            )
        return cred, None

    def _update(self, call: Call) -> Reply:
        params = call.form()
        cred, error = self._find(call, params)
        if error:
            return error
        status = params.get("Status", "")
        if status not in ("Active", "Inactive"):
            return xml_error(
                "iam",
                "ValidationError",
                f"Value '{status}' at 'status' failed to satisfy constraint: Member must "
                "satisfy enum value set: [Active, Inactive]",
                400,
            )
        with self._lock:
            cred.status = status
        return query_reply("UpdateServiceSpecificCredential", {})

    def _reset(self, call: Call) -> Reply:
        params = call.form()
        cred, error = self._find(call, params)
        if error:
            return error
        with self._lock:
            cred.secret = _new_secret()
            answer = cred.with_secret()
        return query_reply("ResetServiceSpecificCredential", {"ServiceSpecificCredential": answer})

    def _delete(self, call: Call) -> Reply:
        params = call.form()
        cred, error = self._find(call, params)
        if error:
            return error
        with self._lock:
            self._by_account.get(call.account_id, {}).pop(cred.credential_id, None)
        return query_reply("DeleteServiceSpecificCredential", {})


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _no_such_entity(message: str) -> Reply:
    return xml_error("iam", "NoSuchEntity", message, 404)

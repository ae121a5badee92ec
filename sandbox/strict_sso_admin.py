"""The sso-admin rules moto lacks: conflicts, asynchronous request statuses, provisioning."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.sso_roles import SsoRoles
from sandbox.strict_settings import AssignmentFault, Strictness
from sandbox.wire import Call, Reply, json_error, json_reply

log = logging.getLogger(__name__)


@dataclass
class _AsyncRequest:
    """One asynchronous sso-admin request the middleware reports on."""

    kind: str  # creation | deletion | provisioning
    request_id: str
    status: dict[str, Any]  # the status object without Status/FailureReason
    polls_left: int
    final: str = "SUCCEEDED"
    failure_reason: str | None = None
    done: bool = False
    # Monotonic time it completes at (time-based model), None: after ``polls_left`` polls.
    completes_at: float | None = None

    def view(self) -> dict[str, Any]:
        if self.completes_at is not None and time.monotonic() >= self.completes_at:
            self.done = True
        out = dict(self.status)
        out["RequestId"] = self.request_id
        out["Status"] = self.final if self.done else "IN_PROGRESS"
        if self.done and self.failure_reason:
            out["FailureReason"] = self.failure_reason
        return out

    def poll(self) -> dict[str, Any]:
        if self.completes_at is not None:
            return self.view()
        if self.polls_left > 0:
            self.polls_left -= 1
        else:
            self.done = True
        return self.view()


class SsoAdminRules:
    """sso-admin as AWS answers it, keeping the asynchronous requests it reports on."""

    def __init__(
        self,
        strictness: Strictness,
        sso_roles: SsoRoles,
        lock: threading.RLock,
        forward: Callable[[Call], Reply],
    ):
        self.strictness = strictness
        self.sso_roles = sso_roles
        # The middleware's lock: it also guards the strictness settings the faults live in.
        self._lock = lock
        self._forward_reply = forward
        self._requests: dict[str, _AsyncRequest] = {}

    def handlers(self) -> dict[str, Callable[[Call], Reply | None]]:
        return {
            "sso-admin:CreatePermissionSet": self._create_permission_set,
            "sso-admin:CreateAccountAssignment": self._create_account_assignment,
            "sso-admin:DeleteAccountAssignment": self._delete_account_assignment,
            "sso-admin:ProvisionPermissionSet": self._provision_permission_set,
            "sso-admin:ListPermissionSetsProvisionedToAccount": self._provisioned_to_account,
            "sso-admin:ListAccountsForProvisionedPermissionSet": self._accounts_of_set,
            "sso-admin:PutPermissionsBoundaryToPermissionSet": self._put_boundary,
            "sso-admin:GetPermissionsBoundaryForPermissionSet": self._get_boundary,
            "sso-admin:DeletePermissionsBoundaryFromPermissionSet": self._delete_boundary,
            "sso-admin:DescribeAccountAssignmentCreationStatus": self._describe("creation"),
            "sso-admin:DescribeAccountAssignmentDeletionStatus": self._describe("deletion"),
            "sso-admin:DescribePermissionSetProvisioningStatus": self._describe("provisioning"),
            "sso-admin:ListAccountAssignmentCreationStatus": self._list_statuses("creation"),
            "sso-admin:ListAccountAssignmentDeletionStatus": self._list_statuses("deletion"),
            "sso-admin:ListPermissionSetProvisioningStatus": self._list_statuses("provisioning"),
            "sso-admin:ListTagsForResource": self._list_tags,
            "sso-admin:TagResource": self._tag_resource,
            "sso-admin:UntagResource": self._untag_resource,
        }

    def reset(self) -> None:
        """Forget tracked asynchronous requests (after moto's state is reset)."""
        with self._lock:
            self._requests.clear()

    def _forward(self, call: Call) -> tuple[int, bytes]:
        """Send the call to moto and return its status and body, for rewriting."""
        reply = self._forward_reply(call)
        return reply.status, reply.body

    @staticmethod
    def _ssoadmin(call: Call) -> Any:
        # Imported here: moto is slow to import, and only a serving sandbox needs its backends.
        from moto.ssoadmin.models import ssoadmin_backends

        return ssoadmin_backends[call.account_id][call.region]

    def _create_permission_set(self, call: Call) -> Reply | None:
        if not self.strictness.conflicts:
            return None
        params = call.json()
        for existing in self._ssoadmin(call).permission_sets:
            if existing.instance_arn == params.get("InstanceArn") and existing.name == params.get(
                "Name"
            ):
                return json_error(
                    "ConflictException",
                    f"PermissionSet with name {params.get('Name')} already exists.",
                    409,
                )
        return None

    def _refused_as_delegated(self, call: Call, target_id: Any) -> Reply | None:
        """AccessDeniedException for a delegated administrator acting in the management account.

        A delegated administrator of Identity Center can't manage assignments in the
        management account nor permission sets provisioned there (IAM Identity Center user
        guide, "Delegated administration"; "considerations" of registering a member account).
        """
        if not self.strictness.delegated_admin_checks:
            return None
        management = management_account_id()
        if management is None or str(target_id) != management or call.account_id == management:
            return None
        return json_error(
            "AccessDeniedException",
            f"User: account {call.account_id} is a delegated administrator and is not "
            f"authorized to manage account assignments or permission sets in the management "
            f"account {management}",
            400,
        )

    def _create_account_assignment(self, call: Call) -> Reply | None:
        params = call.json()
        refused = self._refused_as_delegated(call, params.get("TargetId"))
        if refused is not None:
            return refused
        wanted = _assignment_key(params)
        if self.strictness.conflicts:
            for existing in self._ssoadmin(call).account_assignments:
                if _assignment_key(vars(existing), snake=True) == wanted:
                    return json_error(
                        "ConflictException",
                        "The request would create an account assignment that already exists.",
                        409,
                    )
        summary = {
            "TargetId": params.get("TargetId"),
            "TargetType": params.get("TargetType"),
            "PermissionSetArn": params.get("PermissionSetArn"),
            "PrincipalType": params.get("PrincipalType"),
            "PrincipalId": params.get("PrincipalId"),
            "CreatedDate": time.time(),
        }
        fault = self._take_fault(params.get("TargetId"), params.get("PermissionSetArn"))
        if fault is not None:
            # The assignment is never made, as when AWS reports FAILED.
            tracked = self._track("creation", summary, "FAILED", fault.reason)
            log.info("injected FAILED for assignment %s", tracked.request_id)
            return json_reply({"AccountAssignmentCreationStatus": tracked.view()})
        # Creating an assignment provisions the permission set to the account (sso-admin API
        # reference, CreateAccountAssignment): if that can't succeed, neither does this.
        permission_set = self._permission_set(call, params.get("PermissionSetArn"))
        account_id = str(params.get("TargetId"))
        if permission_set is not None:
            reason = self.sso_roles.check(permission_set, account_id)
            if reason is not None:
                tracked = self._track("creation", summary, "FAILED", reason)
                return json_reply({"AccountAssignmentCreationStatus": tracked.view()})
        status, body = self._forward(call)
        if status != 200:
            return Reply(status, body, "application/x-amz-json-1.1", {})
        if permission_set is not None:
            self.sso_roles.provision(permission_set, account_id)
        created = json.loads(body)["AccountAssignmentCreationStatus"]
        tracked = self._track("creation", {**summary, **_without_status(created)})
        return json_reply({"AccountAssignmentCreationStatus": tracked.view()})

    def _delete_account_assignment(self, call: Call) -> Reply | None:
        params = call.json()
        refused = self._refused_as_delegated(call, params.get("TargetId"))
        if refused is not None:
            return refused
        fault = self._take_fault(params.get("TargetId"), params.get("PermissionSetArn"), "delete")
        if fault is not None:
            # The assignment stays, as when AWS reports the deletion FAILED.
            keys = ("TargetId", "TargetType", "PermissionSetArn", "PrincipalType", "PrincipalId")
            summary = {k: params.get(k) for k in keys} | {"CreatedDate": time.time()}
            tracked = self._track("deletion", summary, "FAILED", fault.reason)
            return json_reply({"AccountAssignmentDeletionStatus": tracked.view()})
        permission_set = self._permission_set(call, params.get("PermissionSetArn"))
        status, body = self._forward(call)
        if status != 200:
            return Reply(status, body, "application/x-amz-json-1.1", {})
        account_id = str(params.get("TargetId"))
        ps_arn = params.get("PermissionSetArn")
        remaining = [
            a
            for a in list(self._ssoadmin(call).account_assignments)
            if a.target_id == account_id and a.permission_set_arn == ps_arn
        ]
        if permission_set is not None and not remaining:
            # The role lives while the set is assigned in the account: removing the last
            # assignment removes the AWSReservedSSO_ role ("Remove permission sets in IAM
            # Identity Center", https://docs.aws.amazon.com/singlesignon/latest/userguide/
            # howtoremovepermissionset.html; practitioners report the same, e.g.
            # github.com/ministryofjustice/modernisation-platform/issues/6216).
            self.sso_roles.remove(ps_arn, permission_set.name, account_id)
        deleted = json.loads(body)["AccountAssignmentDeletionStatus"]
        tracked = self._track("deletion", _without_status(deleted))
        return json_reply({"AccountAssignmentDeletionStatus": tracked.view()})

    def _provision_permission_set(self, call: Call) -> Reply | None:
        params = call.json()
        if params.get("TargetType") == "AWS_ACCOUNT":
            refused = self._refused_as_delegated(call, params.get("TargetId"))
            if refused is not None:
                return refused
        ps_arn = params.get("PermissionSetArn")
        permission_set = self._permission_set(call, ps_arn)
        if params.get("TargetType") == "AWS_ACCOUNT":
            accounts = [str(params.get("TargetId"))]
        else:  # ALL_PROVISIONED_ACCOUNTS
            assigned = {
                a.target_id
                for a in list(self._ssoadmin(call).account_assignments)
                if a.permission_set_arn == ps_arn
            }
            accounts = sorted(assigned | set(self.sso_roles.provisioned_accounts(ps_arn)))
        reason = None
        if permission_set is not None:
            reason = next(
                (r for r in (self.sso_roles.check(permission_set, a) for a in accounts) if r),
                None,
            )
        status, body = self._forward(call) if reason is None else (200, b"")
        if status != 200:
            return Reply(status, body, "application/x-amz-json-1.1", {})
        provisioned: dict[str, Any] = {"PermissionSetArn": ps_arn, "CreatedDate": time.time()}
        if body:
            provisioned = _without_status(json.loads(body)["PermissionSetProvisioningStatus"])
        # AWS reports the target account only for TargetType AWS_ACCOUNT; moto reports the
        # caller's account.
        provisioned.pop("AccountId", None)
        if params.get("TargetType") == "AWS_ACCOUNT":
            provisioned["AccountId"] = params.get("TargetId")
        if reason is not None:
            tracked = self._track("provisioning", provisioned, "FAILED", reason)
            return json_reply({"PermissionSetProvisioningStatus": tracked.view()})
        if permission_set is not None:
            for account_id in accounts:
                self.sso_roles.provision(permission_set, account_id)
        tracked = self._track("provisioning", provisioned)
        return json_reply({"PermissionSetProvisioningStatus": tracked.view()})

    def _provisioned_to_account(self, call: Call) -> Reply | None:
        # moto ignores AccountId and lists every set ProvisionPermissionSet was ever called
        # for, in any account, and none a CreateAccountAssignment provisioned. AWS lists the
        # sets provisioned to that account (API_ListPermissionSetsProvisionedToAccount):
        # those whose role is there.
        params = call.json()
        if self._ssoadmin(call).instances and not any(
            i.instance_arn == params.get("InstanceArn") for i in self._ssoadmin(call).instances
        ):
            return None  # moto's own answer for an unknown instance
        account_id = str(params.get("AccountId"))
        arns = self.sso_roles.provisioned_to(account_id)
        wanted = params.get("ProvisioningStatus")
        if wanted in ("LATEST_PERMISSION_SET_PROVISIONED", "LATEST_PERMISSION_SET_NOT_PROVISIONED"):
            latest = wanted == "LATEST_PERMISSION_SET_PROVISIONED"
            arns = [
                arn
                for arn in arns
                if (ps := self._permission_set(call, arn)) is not None
                and self.sso_roles.is_latest(ps, account_id) == latest
            ]
        return json_reply({"PermissionSets": arns})

    def _accounts_of_set(self, call: Call) -> Reply | None:
        # moto answers its default account whatever was provisioned; AWS lists the accounts
        # the set is provisioned to (API_ListAccountsForProvisionedPermissionSet), filtered by
        # ProvisioningStatus as ListPermissionSetsProvisionedToAccount is.
        params = call.json()
        permission_set = self._permission_set(call, params.get("PermissionSetArn"))
        if permission_set is None:
            return json_error(
                "ResourceNotFoundException", "Could not find PermissionSet with specified ARN", 400
            )
        accounts = self.sso_roles.provisioned_accounts(permission_set.permission_set_arn)
        wanted = params.get("ProvisioningStatus")
        if wanted in ("LATEST_PERMISSION_SET_PROVISIONED", "LATEST_PERMISSION_SET_NOT_PROVISIONED"):
            latest = wanted == "LATEST_PERMISSION_SET_PROVISIONED"
            accounts = [
                a for a in accounts if self.sso_roles.is_latest(permission_set, a) == latest
            ]
        return json_reply({"AccountIds": accounts})

    # Tags of a permission set (moto 5.2.5 keeps CreatePermissionSet's Tags but implements none
    # of the tagging calls). Only permission sets are tagged here; instances are not.
    def _tagged(self, call: Call) -> tuple[Any, Reply | None]:
        arn = call.json().get("ResourceArn")
        permission_set = self._permission_set(call, arn)
        if permission_set is None:
            return None, json_error(
                "ResourceNotFoundException", f"Could not find resource {arn}", 400
            )
        return permission_set, None

    def _list_tags(self, call: Call) -> Reply | None:
        permission_set, missing = self._tagged(call)
        if missing is not None:
            return missing
        return json_reply({"Tags": [dict(t) for t in permission_set.tags or []]})

    def _tag_resource(self, call: Call) -> Reply | None:
        permission_set, missing = self._tagged(call)
        if missing is not None:
            return missing
        with self._lock:
            tags = {t["Key"]: t["Value"] for t in permission_set.tags or []}
            tags.update({t["Key"]: t["Value"] for t in call.json().get("Tags", [])})
            if len(tags) > 50:  # sso-admin API reference, TagResource: at most 50 tags
                return json_error("ValidationException", "A resource has at most 50 tags", 400)
            permission_set.tags = [{"Key": k, "Value": v} for k, v in tags.items()]
        return json_reply({})

    def _untag_resource(self, call: Call) -> Reply | None:
        permission_set, missing = self._tagged(call)
        if missing is not None:
            return missing
        drop = set(call.json().get("TagKeys", []))
        with self._lock:
            permission_set.tags = [t for t in permission_set.tags or [] if t["Key"] not in drop]
        return json_reply({})

    # -- permissions boundaries (moto 5.2.5 raises NotImplementedError for all three) ----------

    def _boundary_target(self, call: Call) -> tuple[Any, Reply | None]:
        """The permission set a boundary call names, or the error AWS answers."""
        permission_set = self._permission_set(call, call.json().get("PermissionSetArn"))
        if permission_set is None:
            return None, json_error(
                "ResourceNotFoundException", "Could not find PermissionSet with specified ARN", 400
            )
        return permission_set, None

    def _put_boundary(self, call: Call) -> Reply | None:
        problem = _boundary_problem(call.json().get("PermissionsBoundary"))
        if problem is not None:
            return json_error("ValidationException", problem, 400)
        permission_set, error = self._boundary_target(call)
        if error is not None:
            return error
        raw = call.json()["PermissionsBoundary"]
        if raw.get("ManagedPolicyArn"):
            boundary: dict[str, Any] = {"ManagedPolicyArn": raw["ManagedPolicyArn"]}
        else:
            ref = raw["CustomerManagedPolicyReference"]
            boundary = {
                "CustomerManagedPolicyReference": {
                    "Name": ref["Name"],
                    "Path": ref.get("Path") or "/",
                }
            }
        self.sso_roles.set_boundary(permission_set.permission_set_arn, boundary)
        return json_reply({})

    def _get_boundary(self, call: Call) -> Reply | None:
        permission_set, error = self._boundary_target(call)
        if error is not None:
            return error
        boundary = self.sso_roles.boundary(permission_set.permission_set_arn)
        if boundary is None:
            # AWS answers a set without a boundary so (API_GetPermissionsBoundaryFor...).
            return json_error(
                "ResourceNotFoundException", "Permissions boundary not found for PermissionSet", 400
            )
        return json_reply({"PermissionsBoundary": boundary})

    def _delete_boundary(self, call: Call) -> Reply | None:
        permission_set, error = self._boundary_target(call)
        if error is not None:
            return error
        if self.sso_roles.boundary(permission_set.permission_set_arn) is None:
            return json_error(
                "ResourceNotFoundException", "Permissions boundary not found for PermissionSet", 400
            )
        self.sso_roles.set_boundary(permission_set.permission_set_arn, None)
        return json_reply({})

    def _permission_set(self, call: Call, permission_set_arn: str | None) -> Any:
        for permission_set in list(self._ssoadmin(call).permission_sets):
            if permission_set.permission_set_arn == permission_set_arn:
                return permission_set
        return None

    def _describe(self, kind: str) -> Callable[[Call], Reply | None]:
        id_key, out_key = _STATUS_KEY[kind]

        def describe(call: Call) -> Reply | None:
            request_id = call.json().get(id_key, "")
            with self._lock:
                tracked = self._requests.get(request_id)
                if tracked is None or tracked.kind != kind:
                    return json_error(
                        "ResourceNotFoundException", f"Request {request_id} not found.", 400
                    )
                return json_reply({out_key: tracked.poll()})

        return describe

    def _list_statuses(self, kind: str) -> Callable[[Call], Reply | None]:
        out_key = {
            "creation": "AccountAssignmentsCreationStatus",
            "deletion": "AccountAssignmentsDeletionStatus",
            "provisioning": "PermissionSetsProvisioningStatus",
        }[kind]

        def list_statuses(call: Call) -> Reply | None:
            wanted = (call.json().get("Filter") or {}).get("Status")
            with self._lock:
                items = [
                    {k: v for k, v in r.view().items() if k in ("Status", "RequestId")}
                    | {"CreatedDate": r.status.get("CreatedDate")}
                    for r in self._requests.values()
                    if r.kind == kind
                ]
            if wanted:
                items = [item for item in items if item["Status"] == wanted]
            return json_reply({out_key: items})

        return list_statuses

    def _track(
        self,
        kind: str,
        status: dict[str, Any],
        final: str = "SUCCEEDED",
        failure_reason: str | None = None,
    ) -> _AsyncRequest:
        # Our own ids: moto's come from its seeded random, which repeats after a re-seed.
        with self._lock:
            tracked = _AsyncRequest(
                kind=kind,
                request_id=str(uuid.uuid4()),
                status=status,
                polls_left=self.strictness.async_in_progress_polls,
                final=final,
                failure_reason=failure_reason,
                completes_at=time.monotonic() + self.strictness.async_completion_ms / 1000
                if self.strictness.async_completion_ms > 0
                else None,
            )
            self._requests[tracked.request_id] = tracked
            return tracked

    def _take_fault(
        self, account_id: str | None, permission_set_arn: str | None, operation: str = "create"
    ) -> AssignmentFault | None:
        with self._lock:
            for fault in self.strictness.faults:
                # "*" matches any: a test can't know a permission set's ARN before it exists.
                if (
                    fault.operation == operation
                    and fault.account_id in ("*", account_id)
                    and fault.permission_set_arn in ("*", permission_set_arn)
                ):
                    self.strictness.faults.remove(fault)
                    return fault
        return None


_STATUS_KEY = {
    "creation": ("AccountAssignmentCreationRequestId", "AccountAssignmentCreationStatus"),
    "deletion": ("AccountAssignmentDeletionRequestId", "AccountAssignmentDeletionStatus"),
    "provisioning": ("ProvisionPermissionSetRequestId", "PermissionSetProvisioningStatus"),
}

_ASSIGNMENT_FIELDS = (
    ("InstanceArn", "instance_arn"),
    ("TargetId", "target_id"),
    ("PermissionSetArn", "permission_set_arn"),
    ("PrincipalType", "principal_type"),
    ("PrincipalId", "principal_id"),
)


def management_account_id() -> str | None:
    """The organization's management account, as moto's Organizations has it (None: none)."""
    # Imported here: moto is slow to import, and only a serving sandbox needs its backends.
    from moto.organizations.models import organizations_backends

    for backends in list(organizations_backends.values()):  # list(): moto's thread note
        for backend in list(backends.values()):
            if backend.org is not None:
                return str(backend.org.master_account_id)
    return None


def _assignment_key(values: dict[str, Any], snake: bool = False) -> tuple[Any, ...]:
    return tuple(values.get(s if snake else c) for c, s in _ASSIGNMENT_FIELDS)


# sso-admin API reference: PermissionsBoundary, CustomerManagedPolicyReference (patterns).
_MANAGED_ARN = re.compile(
    r"^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):iam::aws:policy"
    r"((/[A-Za-z0-9\.,\+@=_-]+)*)/([A-Za-z0-9\.,\+=@_-]+)$"
)
_POLICY_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
_POLICY_PATH = re.compile(r"^((/[A-Za-z0-9\.,\+@=_-]+)*)/$")


def _boundary_problem(raw: Any) -> str | None:
    """Why sso-admin refuses a ``PermissionsBoundary``: it takes exactly one of
    ``ManagedPolicyArn`` (an AWS-managed policy) or ``CustomerManagedPolicyReference``
    (API reference, PermissionsBoundary data type)."""
    if not isinstance(raw, dict):
        return (
            "1 validation error detected: Value null at 'permissionsBoundary' failed to "
            "satisfy constraint: Member must not be null"
        )
    arn, ref = raw.get("ManagedPolicyArn"), raw.get("CustomerManagedPolicyReference")
    if bool(arn) == bool(ref):
        return (
            "PermissionsBoundary must specify exactly one of ManagedPolicyArn or "
            "CustomerManagedPolicyReference"
        )
    if arn:
        if not _MANAGED_ARN.match(str(arn)):
            return f"ManagedPolicyArn {arn} is not an AWS managed policy ARN"
        return None
    if not isinstance(ref, dict) or not _POLICY_NAME.match(str(ref.get("Name") or "")):
        return "CustomerManagedPolicyReference.Name must match [\\w+=,.@-]{1,128}"
    if "Path" in ref and not _POLICY_PATH.match(str(ref["Path"])):
        return f"CustomerManagedPolicyReference.Path {ref['Path']} must begin and end with /"
    return None


def _without_status(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in ("Status", "RequestId", "FailureReason")}

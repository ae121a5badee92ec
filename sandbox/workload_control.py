"""``/_iamc/workloads/*``: play the seeded workloads' key usage, and an owner's switch to a role.

``play`` sends each workload user's calls as its runtime would (``sandbox/workload_usage.py``);
``switch`` plays an owner moving a workload onto its replacement role: the runtime assumes the
role (its trust policy evaluated as STS would) and makes a few calls with the role's
credentials, and the user's key is not played again.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from domain.workloads import ROLE_PATH, Runtime, replacement_role_name
from sandbox.oidc import github_token
from sandbox.strict_sts import find_role, note_role_used
from sandbox.trust import Caller
from sandbox.wire import Reply, json_reply
from sandbox.workload_requests import PLAYBACK_LOCK, SelfRequests
from sandbox.workload_usage import (
    SCANNER_AGENT,
    VENDOR_ACCOUNTS,
    Workload,
    base_name,
    round_times,
    runtime_calls,
    seeded_workloads,
    source_ip,
    user_agent,
)

_VENDOR_USER = "vendor-integration"
_ASSUME_ANY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}
# The service principal that assumes a replacement role for each runtime.
SERVICE_PRINCIPALS = {
    Runtime.LAMBDA: "lambda.amazonaws.com",
    Runtime.ECS: "ecs-tasks.amazonaws.com",
    Runtime.EC2: "ec2.amazonaws.com",
    Runtime.CODEBUILD: "codebuild.amazonaws.com",
    Runtime.ON_PREMISES: "rolesanywhere.amazonaws.com",
}
# IAM Roles Anywhere's CreateSession needs the trust to allow all three (Roles Anywhere user
# guide, "Trust model"); the other services ask for sts:AssumeRole.
_ROLES_ANYWHERE_ACTIONS = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")


@dataclass
class WorkloadState:
    """What the playback remembers: who was played as what, and who switched to a role."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runtimes: list[dict[str, Any]] = field(default_factory=list)
    switched: set[tuple[str, str]] = field(default_factory=set)

    def reset(self) -> None:
        with self.lock:
            self.runtimes = []
            self.switched = set()


class SwitchDenied(Exception):
    """The runtime may not assume the role (or there is none): the switch did not happen."""


def control_workloads(
    mw: Any, method: str, path: str, payload: dict[str, Any], environ: dict[str, Any]
) -> Reply:
    """Serve one ``/_iamc/workloads/*`` request for the middleware ``mw``."""
    url = f"http://{environ.get('HTTP_HOST', '127.0.0.1')}"
    state: WorkloadState = mw.workload_state
    if path == "/_iamc/workloads/runtimes" and method == "GET":
        manifest = mw.manifest or None
        known = state.runtimes or [w.view() for w in seeded_workloads(manifest)]
        return json_reply({"workloads": known, "switched": sorted(map(list, state.switched))})
    if method != "POST":
        return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)
    try:
        with PLAYBACK_LOCK:
            if path == "/_iamc/workloads/play":
                return json_reply(play(mw, url, payload))
            if path == "/_iamc/workloads/switch":
                return json_reply(switch(mw, url, payload))
    except SwitchDenied as err:
        return json_reply({"error": str(err), "switched": False}, 403)
    except (KeyError, ValueError, TypeError) as err:
        return json_reply({"error": f"bad request: {err!r}"}, 400)
    return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)


def play(mw: Any, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Play ``rounds`` rounds of each workload's calls over the past ``days`` days."""
    days = int(payload.get("days", 14))
    rounds = max(1, int(payload.get("rounds", 4)))
    state: WorkloadState = mw.workload_state
    workloads = seeded_workloads(payload.get("manifest") or mw.manifest, state.switched)
    accounts = payload.get("accounts")
    if accounts:
        workloads = [w for w in workloads if w.account_id in set(accounts)]
    requests = SelfRequests(url)
    now = mw.clock.now()
    played: list[dict[str, Any]] = []
    noise = _scanner_probe(requests, workloads, now)
    for workload in workloads:
        played.append(_play_one(requests, workload, now, days, rounds))
    with state.lock:
        views = {(v["account_id"], v["user"]): v for v in state.runtimes}
        views.update({(w.account_id, w.user): w.view() for w in workloads})
        state.runtimes = list(views.values())
    unplaceable = [p for p in played if p["runtime"] == Runtime.UNKNOWN]
    return {"played": played, "noise": noise, "unplaceable": unplaceable}


def _credentials(workload: Workload) -> dict[str, str | None]:
    return {
        "aws_access_key_id": workload.access_key_id,
        "aws_secret_access_key": workload.secret,
    }


def _play_one(
    requests: SelfRequests, workload: Workload, now: Any, days: int, rounds: int
) -> dict[str, Any]:
    agents: set[str] = set()
    addresses: set[str] = set()
    calls, errors = 0, 0
    for index, when in enumerate(round_times(now, days, rounds, workload)):
        address = source_ip(workload, index)
        addresses.add(address)
        for service, operation, params in runtime_calls(workload.runtime):
            agent = user_agent(workload.runtime, service, operation)
            agents.add(agent)
            _, error = requests.call(
                _credentials(workload),
                service,
                operation,
                params,
                agent=agent,
                address=address,
                when=when,
            )
            calls += 1
            errors += error is not None
    return {
        **workload.view(),
        "calls": calls,
        "errors": errors,
        "user_agents": sorted(agents),
        "source_ips": sorted(addresses),
    }


def _scanner_probe(requests: SelfRequests, workloads: list[Workload], now: Any) -> list[dict]:
    """A secret scanner tries the key written in the repository (ci-deployer's, else the
    first): one GetCallerIdentity, which is not usage. Played first, so the key's last use
    stays its workload's."""
    target = next((w for w in workloads if base_name(w.user) == "ci-deployer"), None)
    target = target or (workloads[0] if workloads else None)
    if target is None:
        return []
    when = now - timedelta(days=2, hours=3)
    address = "185.220.101.47"
    requests.call(
        _credentials(target),
        "sts",
        "GetCallerIdentity",
        {},
        agent=SCANNER_AGENT,
        address=address,
        when=when,
    )
    return [{**target.view(), "user_agent": SCANNER_AGENT, "source_ip": address, "calls": 1}]


# -- the owner's switch -----------------------------------------------------------------------


def switch(mw: Any, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Play the owner moving ``user``'s workload onto its replacement role.

    Raises:
        SwitchDenied: No such role, or its trust does not let the runtime assume it.
    """
    account_id, user = str(payload["account_id"]), str(payload["user"])
    runtime = Runtime(payload["runtime"])
    role_name = payload.get("role_name") or replacement_role_name(user)
    role_arn = f"arn:aws:iam::{account_id}:role{ROLE_PATH}{role_name}"
    role = find_role(role_arn)
    if role is None:
        raise SwitchDenied(f"no role {role_arn}: apply the replace stage first")
    requests = SelfRequests(url)
    workload = Workload(account_id, user, "", "", runtime)
    if runtime in (Runtime.GITHUB_ACTIONS, Runtime.TERRAFORM):
        credentials, how = _switch_web_identity(requests, role, workload, payload, mw)
    elif runtime is Runtime.VENDOR:
        credentials, how = _switch_vendor(requests, role, workload, payload)
    elif runtime in SERVICE_PRINCIPALS:
        credentials, how = _switch_service(mw, role, workload, payload)
    else:
        raise SwitchDenied(f"{user} runs where nobody can place it ({runtime}): no role to use")
    calls = []
    for service, operation, params in runtime_calls(runtime):
        _, error = requests.call(
            credentials,
            service,
            operation,
            params,
            agent=user_agent(runtime, service, operation),
            address=source_ip(workload, 0),
        )
        calls.append({"call": f"{service}:{operation}", "error": error})
    with mw.workload_state.lock:
        mw.workload_state.switched.add((account_id, user))
    return {
        "switched": True,
        "account_id": account_id,
        "user": user,
        "runtime": str(runtime),
        "role_arn": role.arn,
        "assumed_by": how,
        "calls": calls,
    }


def _session_credentials(answer: dict[str, Any]) -> dict[str, str | None]:
    creds = answer["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def _switch_web_identity(
    requests: SelfRequests, role: Any, workload: Workload, payload: dict[str, Any], mw: Any
) -> tuple[dict[str, str | None], str]:
    repository = payload.get("repository")
    if not repository:
        raise SwitchDenied("a GitHub Actions switch needs the repository (OWNER/NAME)")
    token = github_token(
        repository,
        ref=payload.get("ref", "refs/heads/main"),
        audience=payload.get("audience", "sts.amazonaws.com"),
        issued_at=int(mw.clock.now().timestamp()),
    )
    answer, error = requests.call(
        {"aws_access_key_id": None, "aws_secret_access_key": None},
        "sts",
        "AssumeRoleWithWebIdentity",
        {"RoleArn": role.arn, "RoleSessionName": "GitHubActions", "WebIdentityToken": token},
        agent=user_agent(Runtime.GITHUB_ACTIONS, "sts", "GetCallerIdentity"),
        address=source_ip(workload, 0),
    )
    if answer is None:
        raise SwitchDenied(
            f"AssumeRoleWithWebIdentity of {role.arn} for repo:{repository} refused: {error}"
        )
    return _session_credentials(answer), f"GitHub OIDC token of {repository}"


def _switch_vendor(
    requests: SelfRequests, role: Any, workload: Workload, payload: dict[str, Any]
) -> tuple[dict[str, str | None], str]:
    vendor_account = str(payload.get("vendor_account") or VENDOR_ACCOUNTS["datadog"])
    external_id = payload.get("external_id") or _external_id_in(role)
    key = _vendor_key(vendor_account)
    params: dict[str, Any] = {"RoleArn": role.arn, "RoleSessionName": "DatadogAWSIntegration"}
    if external_id:
        params["ExternalId"] = external_id
    answer, error = requests.call(
        key,
        "sts",
        "AssumeRole",
        params,
        agent=user_agent(Runtime.VENDOR, "sts", "AssumeRole"),
        address=source_ip(workload, 0),
    )
    if answer is None:
        raise SwitchDenied(
            f"AssumeRole of {role.arn} from vendor {vendor_account} refused: {error}"
        )
    return _session_credentials(answer), f"AssumeRole from {vendor_account} with an ExternalId"


def _external_id_in(role: Any) -> str | None:
    """The ExternalId the owner handed the vendor: the one the role's trust requires."""
    try:
        trust = json.loads(unquote(role.assume_role_policy_document))
    except ValueError:
        return None
    statements = trust.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        for tests in (statement.get("Condition") or {}).values():
            for key, value in tests.items():
                if key.lower() == "sts:externalid":
                    return value[0] if isinstance(value, list) else str(value)
    return None


def _vendor_key(vendor_account: str) -> dict[str, str | None]:
    """An access key of a user in the vendor's account (made once, in moto directly)."""
    from moto.iam.models import iam_backends

    backend = iam_backends[vendor_account]["aws"]
    if _VENDOR_USER not in backend.users:
        backend.create_user(region_name="us-east-1", user_name=_VENDOR_USER)
        # The vendor's own policy lets its integration user assume its customers' roles: STS
        # asks the caller's account as well as the role's trust (identity_policy_checks).
        backend.put_user_policy(_VENDOR_USER, "assume-customer-roles", json.dumps(_ASSUME_ANY))
    user = backend.users[_VENDOR_USER]
    key = next((k for k in user.access_keys if k.status == "Active"), None)
    if key is None:
        key = backend.create_access_key(_VENDOR_USER, prefix="AKIA")
    return {"aws_access_key_id": key.access_key_id, "aws_secret_access_key": key.secret_access_key}


def _switch_service(
    mw: Any, role: Any, workload: Workload, payload: dict[str, Any]
) -> tuple[dict[str, str | None], str]:
    """The service assumes the role, as STS evaluates it: the service principal, with
    ``aws:SourceAccount`` (and ``aws:SourceArn`` where the service sets it)."""
    from moto.sts.models import sts_backends

    principal = SERVICE_PRINCIPALS[workload.runtime]
    account = str(payload.get("source_account") or workload.account_id)
    source_arn = payload.get("source_arn") or _source_arn(workload, role)
    context = {"aws:sourceaccount": account}
    if source_arn:
        context["aws:sourcearn"] = source_arn
    caller = Caller("Service", principal, "", context)
    actions = (
        _ROLES_ANYWHERE_ACTIONS if workload.runtime is Runtime.ON_PREMISES else ("sts:AssumeRole",)
    )
    for action in actions:
        decision = mw.sts.check(role, action, caller)
        if not decision.allowed:
            identity = {"type": "AWSService", "invokedBy": principal}
            mw.trail.record_role_event(
                role.account_id,
                "AssumeRole",
                role.arn,
                identity,
                region="us-east-1",
                source_ip=principal,
                user_agent=principal,
                error_code="AccessDenied",
                error_message="Access denied",
            )
            raise SwitchDenied(
                f"{principal} may not {action} {role.arn} (aws:SourceAccount={account}"
                f"{', aws:SourceArn=' + source_arn if source_arn else ''}): {decision.why}"
            )
    session = sts_backends[role.account_id]["aws"].assume_role(
        region_name="us-east-1",
        role_session_name=f"{workload.runtime}-{uuid.uuid4().hex[:8]}",
        role_arn=role.arn,
        policy=None,
        duration=3600,
        external_id=None,
    )
    note_role_used(role, "us-east-1", mw.clock.now())
    mw.trail.record_role_event(
        role.account_id,
        "AssumeRole",
        role.arn,
        {"type": "AWSService", "invokedBy": principal},
        region="us-east-1",
        source_ip=principal,
        user_agent=principal,
        request_parameters={"roleArn": role.arn, "roleSessionName": session.session_name},
    )
    credentials = {
        "aws_access_key_id": session.access_key_id,
        "aws_secret_access_key": session.secret_access_key,
        "aws_session_token": session.session_token,
    }
    return credentials, f"{principal} (aws:SourceAccount={account})"


def _source_arn(workload: Workload, role: Any) -> str | None:
    """What the service sets as aws:SourceArn: the function, task, project or trust anchor."""
    acct, name = workload.account_id, workload.user
    stable_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{acct}/{name}")
    if workload.runtime is Runtime.LAMBDA:
        return f"arn:aws:lambda:us-east-1:{acct}:function:{name}"
    if workload.runtime is Runtime.ECS:
        return f"arn:aws:ecs:us-east-1:{acct}:task/{name}/{stable_id.hex}"
    if workload.runtime is Runtime.CODEBUILD:
        return f"arn:aws:codebuild:us-east-1:{acct}:project/{name}"
    if workload.runtime is Runtime.ON_PREMISES:
        # The owner creates the trust anchor the plan lists as a prerequisite: the one the
        # role's trust names, if it names one in this account.
        anchor = f"arn:aws:rolesanywhere:us-east-1:{acct}:trust-anchor/{stable_id}"
        return _anchor_in(role, acct) or anchor
    return None


def _anchor_in(role: Any, account_id: str) -> str | None:
    text = unquote(role.assume_role_policy_document)
    match = re.search(rf"arn:aws:rolesanywhere:[\w-]+:{account_id}:trust-anchor/[\w-]+", text)
    return match.group(0) if match else None

"""The STS rules moto lacks: a role is assumed only if it exists and its trust policy allows
the caller (with MFA in the request context when the caller signed with its MFA device), a
cross-account caller's own policies must allow it too, and a use of the role shows in its
RoleLastUsed and the account's CloudTrail."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.cloudtrail import EVENT_TIME_KEY, Clock, Trail, source_ip_of
from sandbox.identity_policy import identity_allows
from sandbox.oidc import token_claims
from sandbox.strict_settings import Strictness
from sandbox.trust import Caller, Decision, aws_caller, evaluate
from sandbox.wire import Call, Reply, iam_backend, xml_error

# A virtual MFA device's one-time code: six digits (IAM API reference, EnableMFADevice).
_TOKEN_CODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class Principal:
    """Who signed a request: the ARN trust policies match, what CloudTrail shows."""

    match_arn: str  # user ARN, role ARN (for a session), or the account root
    display_arn: str  # what "User: ... is not authorized" names (a session's sts ARN)
    account_id: str
    identity: dict[str, Any]  # CloudTrail userIdentity


def signing_principal(account_id: str, access_key: str) -> Principal:
    """The principal behind an access key moto resolved to ``account_id``: an IAM user, a
    role session, or (a key moto does not know, such as the sandbox's ``testing``) the root."""
    from moto.sts.models import sts_backends

    root = f"arn:aws:iam::{account_id}:root"
    key = iam_backend(account_id).access_keys.get(access_key) if access_key else None
    if key is not None and key.role_arn:
        role_arn = key.role_arn
        session = sts_backends[account_id]["aws"].get_assumed_role_from_access_key(access_key)
        display = session.arn if session is not None else role_arn
        identity = {
            "type": "AssumedRole",
            "principalId": session.user_id if session is not None else "",
            "arn": display,
            "accountId": account_id,
            "accessKeyId": access_key,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role_arn}},
        }
        return Principal(role_arn, display, account_id, identity)
    if key is not None and key.user_name:
        user = iam_backend(account_id).users.get(key.user_name)
        if user is not None:
            identity = {
                "type": "IAMUser",
                "principalId": user.id,
                "arn": user.arn,
                "accountId": account_id,
                "accessKeyId": access_key,
                "userName": user.name,
            }
            return Principal(user.arn, user.arn, account_id, identity)
    identity = {"type": "Root", "arn": root, "accountId": account_id, "accessKeyId": access_key}
    return Principal(root, root, account_id, identity)


def find_role(role_arn: str) -> Any | None:
    """moto's role for an ARN (matched by account and name, as STS resolves it), or None."""
    parts = role_arn.split(":")
    if len(parts) != 6 or not parts[5].startswith("role/"):
        return None
    name = parts[5].rsplit("/", 1)[-1]
    from moto.iam.models import iam_backends

    if parts[4] not in iam_backends:
        return None
    return next((r for r in iam_backend(parts[4]).roles.values() if r.name == name), None)


def _denied(principal: str, action: str, role_arn: str) -> Reply:
    # AWS answers a missing role and a trust that excludes the caller alike, without saying
    # which (STS API reference, AssumeRole errors).
    return xml_error(
        "sts",
        "AccessDenied",
        f"User: {principal} is not authorized to perform: {action} on resource: {role_arn}",
        403,
    )


class StsRules:
    """AssumeRole and AssumeRoleWithWebIdentity as AWS answers them.

    moto hands out credentials for any role ARN; with ``assume_role_checks`` on, the role must
    exist and its trust policy allow the caller (``trust_policy_checks``), and each success
    moves the role's RoleLastUsed and is recorded in the role's account's CloudTrail.
    """

    def __init__(
        self, strictness: Strictness, trail: Trail, clock: Clock, forward: Callable[[Call], Reply]
    ):
        self.strictness = strictness
        self.trail = trail
        self.clock = clock
        self._forward = forward

    def handlers(self) -> dict[str, Callable[[Call], Reply | None]]:
        return {
            "sts:AssumeRole": self.assume_role,
            "sts:AssumeRoleWithWebIdentity": self.assume_role_with_web_identity,
        }

    # -- AssumeRole -------------------------------------------------------------------------

    def assume_role(self, call: Call) -> Reply | None:
        if not self.strictness.assume_role_checks:
            return None
        form = call.form()
        role_arn = form.get("RoleArn", "")
        if len(role_arn.split(":")) != 6 or ":role/" not in role_arn:
            return None  # moto answers the validation error
        principal = signing_principal(call.account_id, call.access_key)
        role = find_role(role_arn)
        mfa = signed_with_mfa(principal, form)
        decision = Decision(False, "the role does not exist")
        if mfa is False:
            decision = Decision(False, _MFA_FAILED)
        elif role is not None:
            caller = aws_caller(
                principal.match_arn,
                principal.account_id,
                **{
                    "sts:ExternalId": form.get("ExternalId"),
                    # Present only for MFA-signed requests (IAM user guide, "AWS global
                    # condition context keys": aws:MultiFactorAuthPresent).
                    "aws:MultiFactorAuthPresent": "true" if mfa else None,
                },
            )
            decision = self.check(role, "sts:AssumeRole", caller)
            if decision.allowed:
                decision = self.check_identity(principal, role, "sts:AssumeRole", caller)
        if not decision.allowed:
            reply = (
                xml_error("sts", "AccessDenied", _MFA_FAILED, 403)
                if mfa is False
                else _denied(principal.display_arn, "sts:AssumeRole", role_arn)
            )
            if role is not None:
                self._record(call, role, "AssumeRole", principal.identity, reply)
            return reply
        reply = self._forward(call)
        self._record(call, role, "AssumeRole", principal.identity, reply)
        return reply

    def check(self, role: Any, action: str, caller: Caller) -> Decision:
        """The trust policy's decision, or allowed when ``trust_policy_checks`` is off."""
        if not self.strictness.trust_policy_checks:
            return Decision(True, "trust policies are not checked (trust_policy_checks off)")
        return evaluate(role.assume_role_policy_document, action, caller)

    def check_identity(
        self, principal: Principal, role: Any, action: str, caller: Caller
    ) -> Decision:
        """The caller's own identity policies' decision on ``action`` on the role, which a
        cross-account IAM user or role session needs besides the trust (IAM user guide,
        "Cross-account policy evaluation logic"); allowed for a caller of the role's own
        account, an account root, or with ``identity_policy_checks`` off."""
        if not self.strictness.identity_policy_checks:
            return Decision(True, "identity policies are not checked (identity_policy_checks off)")
        if principal.account_id == role.account_id or principal.match_arn.endswith(":root"):
            return Decision(True, "no identity policy is needed in the role's own account or root")
        return identity_allows(principal.match_arn, action, role.arn, caller.context)

    # -- AssumeRoleWithWebIdentity ----------------------------------------------------------

    def assume_role_with_web_identity(self, call: Call) -> Reply | None:
        if not self.strictness.assume_role_checks:
            return None
        form = call.form()
        role_arn = form.get("RoleArn", "")
        if len(role_arn.split(":")) != 6 or ":role/" not in role_arn:
            return None
        role = find_role(role_arn)
        action = "sts:AssumeRoleWithWebIdentity"
        if role is None:
            return _denied("anonymous", action, role_arn)
        claims = token_claims(form.get("WebIdentityToken", ""))
        checked = self._check_token(role, claims)
        if isinstance(checked, Reply):
            return checked
        provider, caller = checked
        identity = {
            "type": "WebIdentityUser",
            "principalId": f"{provider}:{caller.context.get(provider + ':aud')}:"
            f"{caller.context.get(provider + ':sub')}",
            "userName": caller.context.get(provider + ":sub"),
            "identityProvider": provider,
        }
        decision = self.check(role, action, caller)
        if not decision.allowed:
            reply = xml_error("sts", "AccessDenied", f"Not authorized to perform {action}", 403)
            self._record(call, role, "AssumeRoleWithWebIdentity", identity, reply)
            return reply
        reply = self._forward(call)
        self._record(call, role, "AssumeRoleWithWebIdentity", identity, reply)
        return reply

    def _check_token(self, role: Any, claims: dict[str, Any] | None) -> tuple[str, Caller] | Reply:
        """The token's provider (``host/path``) and the caller it makes, or the error AWS
        answers: a token that is not a JWT, expired, from an issuer the role's account has no
        OIDC provider for, or for an audience the provider does not list."""
        if claims is None or not isinstance(claims.get("iss"), str):
            return _invalid_token("The ID token provided is not a valid JWT.")
        now = self.clock.now().timestamp()
        if isinstance(claims.get("exp"), int | float) and claims["exp"] < now:
            return xml_error("sts", "ExpiredTokenException", "Token expired.", 400)
        url = claims["iss"].removeprefix("https://").rstrip("/")
        provider_arn = f"arn:aws:iam::{role.account_id}:oidc-provider/{url}"
        provider = iam_backend(role.account_id).open_id_providers.get(provider_arn)
        if provider is None:
            return _invalid_token(
                f"No OpenIDConnect provider found in your account for {claims['iss']}"
            )
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if not any(a in provider.client_id_list for a in audiences):
            return _invalid_token("Incorrect token audience")
        context = {
            f"{url}:aud": str(audiences[0]),
            f"{url}:sub": str(claims.get("sub", "")),
            "aws:federatedprovider": provider_arn,
        }
        for claim in ("amr", "oaud", "repository", "ref"):
            if isinstance(claims.get(claim), str):
                context[f"{url}:{claim}"] = claims[claim]
        lowered = {k.lower(): v for k, v in context.items()}
        return url.lower(), Caller("Federated", provider_arn, role.account_id, lowered)

    # -- role use ---------------------------------------------------------------------------

    def _record(
        self, call: Call, role: Any, event_name: str, identity: dict[str, Any], reply: Reply
    ) -> None:
        """A successful assumption moves RoleLastUsed; either way the role's account's
        trail records it, unless the caller is a user of that account whose own call the
        middleware records already."""
        when: datetime = call.environ.get(EVENT_TIME_KEY) or self.clock.now()
        if reply.status == 200:
            note_role_used(role, call.region, when)
        if identity.get("type") == "IAMUser" and identity.get("accountId") == role.account_id:
            return
        self.trail.record_role_event(
            role.account_id,
            event_name,
            role.arn,
            identity,
            region=call.region,
            source_ip=source_ip_of(call.environ),
            user_agent=call.environ.get("HTTP_USER_AGENT", ""),
            request_parameters={
                "roleArn": role.arn,
                "roleSessionName": call.form().get("RoleSessionName"),
            },
            error_code=reply.error_code,
            error_message="Access denied" if reply.error_code else None,
            when=when,
        )


def note_role_used(role: Any, region: str, when: datetime) -> None:
    """Set what GetRole shows as RoleLastUsed (moto keeps naive UTC dates)."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    role.last_used = when.replace(microsecond=0)
    role.last_used_region = region


_MFA_FAILED = "MultiFactorAuthentication failed with invalid MFA one time pass code."


def signed_with_mfa(principal: Principal, form: dict[str, str]) -> bool | None:
    """Whether an AssumeRole request is MFA-authenticated: None without ``SerialNumber`` and
    ``TokenCode`` (no MFA; the context key stays absent), True when the serial is an MFA
    device of the calling IAM user and the code is six digits (the sandbox takes any), False
    otherwise (AWS refuses the request)."""
    serial, code = form.get("SerialNumber"), form.get("TokenCode")
    if not serial and not code:
        return None
    if principal.identity.get("type") != "IAMUser" or not serial or not code:
        return False
    user = iam_backend(principal.account_id).users.get(principal.identity.get("userName", ""))
    return user is not None and serial in user.mfa_devices and bool(_TOKEN_CODE.match(code))


def _invalid_token(message: str) -> Reply:
    return xml_error("sts", "InvalidIdentityToken", message, 400)

"""GetAccountAuthorizationDetails as AWS answers it: only attached AWS-managed policies, paged."""

from __future__ import annotations

import copy
import functools
from typing import Any
from urllib import parse
from urllib.parse import parse_qs

from sandbox.wire import (
    Call,
    Reply,
    decode_marker,
    encode_marker,
    iam_backend,
    query_reply,
    xml_error,
)

# AWS pages GAAD with MaxItems across all four lists (IAM API reference,
# GetAccountAuthorizationDetails: MaxItems defaults to 100, at most 1000).
DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 1000

_LISTS = (
    ("User", "UserDetailList"),
    ("Group", "GroupDetailList"),
    ("Role", "RoleDetailList"),
    ("Policy", "Policies"),
)


def get_account_authorization_details(call: Call) -> Reply:
    """Answer GAAD from moto's backend instead of letting moto serialize every policy.

    moto lists every AWS-managed policy (~1,580 with their documents, about 0.8 s a call);
    AWS lists customer-managed policies and only the AWS-managed ones attached in the account.
    Building the answer here from moto's model objects, with moto's own serializer, serializes
    only what AWS would return and leaves moto's backend untouched (no swapping of its policy
    list, so concurrent calls see nothing odd). Policies go out as views that URL-encode each
    version's document once per text (``_quoting_once``).
    """
    params = parse_qs(call.body.decode())
    filters = set(params.get("Filter.member.1", []))
    for index in range(2, 10):
        filters.update(params.get(f"Filter.member.{index}", []))
    try:
        max_items = int(params.get("MaxItems", [DEFAULT_MAX_ITEMS])[0])
    except ValueError:
        max_items = 0
    if not 1 <= max_items <= MAX_MAX_ITEMS:
        return xml_error(
            "iam",
            "ValidationError",
            f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to "
            f"satisfy constraint: Member must have value between 1 and {MAX_MAX_ITEMS}",
            400,
        )
    marker = params.get("Marker", [""])[0]
    start = _decode_marker(marker) if marker else 0
    if start is None:
        return xml_error("iam", "ValidationError", "Invalid Marker.", 400)

    backend = iam_backend(call.account_id, call.region)
    items = [(key, entity) for key, entity in _entities(backend, filters)]
    page = items[start : start + max_items]
    result: dict[str, Any] = {name: [] for _, name in _LISTS}
    names = dict(_LISTS)
    for key, entity in page:
        result[names[key]].append(_policy_view(entity) if key == "Policy" else entity)
    result["IsTruncated"] = start + max_items < len(items)
    if result["IsTruncated"]:
        result["Marker"] = _encode_marker(start + max_items)
    return query_reply("GetAccountAuthorizationDetails", result)


def _entities(backend: Any, filters: set[str]) -> list[tuple[str, Any]]:
    # list() copies: other request threads may change the backend's dicts meanwhile.
    wanted = filters or {"User", "Group", "Role", "LocalManagedPolicy", "AWSManagedPolicy"}
    out: list[tuple[str, Any]] = []
    if "User" in wanted:
        out += [("User", u) for u in list(backend.users.values())]
    if "Group" in wanted:
        out += [("Group", g) for g in list(backend.groups.values())]
    if "Role" in wanted:
        out += [("Role", r) for r in list(backend.roles.values())]
    aws_managed = {id(p) for p in backend.aws_managed_policies}
    for policy in list(backend.managed_policies.values()):
        if id(policy) in aws_managed:
            if "AWSManagedPolicy" in wanted and policy.attachment_count > 0:
                out.append(("Policy", policy))
        elif "LocalManagedPolicy" in wanted:
            out.append(("Policy", policy))
    return out


@functools.lru_cache(maxsize=128)
def _quoted(document: str) -> str:
    return parse.quote(document)


def _policy_version_list(policy: Any) -> list[dict[str, Any]]:
    # moto 5.2.5's ManagedPolicy.policy_version_list, with the encoded documents remembered:
    # moto encodes every document on every call, and AWS-managed ones are large
    # (ReadOnlyAccess ~100 KB, ~3 ms of CPU each time).
    return [
        {
            "Document": _quoted(version.document),
            "VersionId": version.version_id,
            "IsDefaultVersion": version.is_default_version,
            "CreateDate": version.create_date,
        }
        for version in policy.versions
    ]


@functools.cache
def _quoting_once(model: type) -> type:
    # The same class name: moto's serializer derives attribute aliases from it.
    return type(model.__name__, (model,), {"policy_version_list": property(_policy_version_list)})


def _policy_view(policy: Any) -> Any:
    """A shallow copy of a moto managed policy whose version list encodes documents once."""
    view = copy.copy(policy)
    view.__class__ = _quoting_once(type(policy))
    return view


def _encode_marker(offset: int) -> str:
    return encode_marker("gaad", offset)


def _decode_marker(marker: str) -> int | None:
    return decode_marker("gaad", marker)

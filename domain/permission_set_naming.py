"""Permission set names and descriptions, a function of the access alone so every wave agrees."""

from __future__ import annotations

import re
from collections import defaultdict

from domain.fingerprinted_access import FingerprintedAccess
from domain.permission_set_quotas import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH

# Identity Center names: [\w+=,.@-]{1,32}. Java's \w is ASCII-only, so say so explicitly.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+=,.@-]{1,32}")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_+=,.@-]+")
_HASH_DIGITS = 8
# Leaves a readable stem beside "-" and the hash, and room for more digits on a clash.
MAX_PREFIX_LENGTH = 12


def check_prefix(prefix: str) -> None:
    if prefix and (not NAME_PATTERN.fullmatch(prefix) or len(prefix) > MAX_PREFIX_LENGTH):
        raise ValueError(
            f"name prefix {prefix!r} must be at most {MAX_PREFIX_LENGTH} "
            "characters of [A-Za-z0-9_+=,.@-]"
        )


def name_stem(access: FingerprintedAccess) -> tuple[str, bool]:
    """The readable part of a name, and whether it may stand alone (without the hash).

    A function of the access alone, never of who holds it: a later wave computes the same
    name for the same access whatever users, groups or accounts it comes from.
    """
    if (
        len(access.aws_managed) == 1
        and not access.customer_managed
        and not access.statements
        and access.boundary is None
    ):
        return access.aws_managed[0].name, True
    managed = access.aws_managed + access.customer_managed
    if managed:
        return "+".join(r.name for r in managed), False
    return _services_stem(access) or "inline", False


def _services_stem(access: FingerprintedAccess) -> str | None:
    """An inline-only access named by the services its Allow statements name ("ec2-iam-s3"),
    as least privilege leaves a narrowed AdministratorAccess; None if one names any service."""
    services: set[str] = set()
    for statement in access.statements.values():
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action")
        for action in actions if isinstance(actions, list) else [actions]:
            service, sep, _ = str(action).partition(":")
            if not sep or "*" in service or "?" in service:
                return None
            services.add(service.lower())
    return "-".join(sorted(services)[:4]) or None


def _name(prefix: str, stem: str, fingerprint: str, digits: int, plain: bool) -> str:
    clean = _NAME_UNSAFE.sub("-", stem).strip("-") or "access"
    if plain and len(prefix) + len(clean) <= MAX_NAME_LENGTH:
        return prefix + clean
    room = MAX_NAME_LENGTH - len(prefix) - digits - 1
    return f"{prefix}{clean[:room].rstrip('-') or 'ps'}-{fingerprint[:digits]}"


def describe_access(access: FingerprintedAccess) -> str:
    """What the set grants, from its access alone: the same in every wave and re-plan.

    No counts of users or accounts (they differ per wave; the plan says whom a set serves).
    """
    parts = []
    if access.aws_managed:
        parts.append("AWS-managed " + ", ".join(r.name for r in access.aws_managed))
    if access.customer_managed:
        names = ", ".join(r.path + r.name for r in access.customer_managed)
        parts.append("customer-managed " + names)
    if access.statements:
        count = len(access.statements)
        parts.append(f"{count} inline statement{'s' if count != 1 else ''}")
    if access.boundary:
        parts.append(f"boundary {access.boundary.name}")
    tail = f"; access {access.fingerprint[:12]} (iamc)"
    text = "IAM access: " + "; ".join(parts or ["none"])
    if len(text) + len(tail) > MAX_DESCRIPTION_LENGTH:
        text = text[: MAX_DESCRIPTION_LENGTH - len(tail) - 3] + "..."
    return text + tail


def unique_names(
    stems: dict[str, tuple[str, bool]], prefix: str, taken: dict[str, str] | None = None
) -> dict[str, str]:
    """Names per fingerprint; where two collide, both get more hash digits until they don't.

    ``taken``: names the organization already uses (name -> fingerprint); a new access never
    takes one of them.
    """
    taken = taken or {}
    digits = dict.fromkeys(stems, _HASH_DIGITS)
    plain = {fp: stem[1] for fp, stem in stems.items()}
    while True:
        names = {fp: _name(prefix, stems[fp][0], fp, digits[fp], plain[fp]) for fp in stems}
        seen: dict[str, list[str]] = defaultdict(list)
        for name, fp in taken.items():
            seen[name].append(fp)
        for fp, name in names.items():
            if fp not in seen[name]:
                seen[name].append(fp)
        clashes = [[fp for fp in fps if fp in stems] for fps in seen.values() if len(fps) > 1]
        if not clashes:
            return names
        widest = MAX_NAME_LENGTH - len(prefix) - 2  # one stem character, "-", the digits
        for fps in clashes:
            if all(digits[fp] >= widest and not plain[fp] for fp in fps):
                # 18+ equal leading hex digits of distinct sha256 digests: not a real case.
                raise RuntimeError(f"permission set name clash: {sorted(names[f] for f in fps)}")
            for fp in fps:
                plain[fp] = False
                digits[fp] = min(digits[fp] + 4, widest)

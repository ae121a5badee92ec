"""Whose key is it? Join what a key scan found with the inventory and the organization.

A found key id is looked up in the latest complete inventory snapshot (owner, status, last used),
then in the migration's earlier snapshots (a key deleted since), then by the account the key id
itself encodes (newer key ids carry their account: see :func:`account_of_key_id`), so a key of
an organization account outside the spec's scope is told apart from a stranger's. Plain data and
pure functions: no AWS call is made, and the found key is never tried against STS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.key_findings import HitSource, IgnoredHit, IgnoreReason, KeyHit
from domain.keys import mask_key_id
from domain.records import AccountInventory


class Classification(StrEnum):
    """What a found key is, once joined with the inventory."""

    ORG_KEY_ACTIVE = "org-key-active"  # an inventoried key, Active
    ORG_KEY_INACTIVE = "org-key-inactive"  # an inventoried key, Inactive
    ORG_KEY_DELETED = "org-key-deleted"  # in an earlier snapshot, not in the latest
    OUT_OF_SCOPE_ACCOUNT = "out-of-scope-account"  # of an org account outside the scope
    UNATTRIBUTED = "unattributed"  # well-formed, not ours (or a secret with no key id)
    IGNORED = "ignored"  # a documentation example or placeholder: the reason says which


ORG_KEY_CLASSES = frozenset(
    {Classification.ORG_KEY_ACTIVE, Classification.ORG_KEY_INACTIVE, Classification.ORG_KEY_DELETED}
)
# Sources where a key is in code or files (SARIF's physical locations), the rest are AWS-side.
CODE_SOURCES = frozenset({HitSource.WORKING_TREE, HitSource.ARCHIVE, HitSource.GIT_HISTORY})

# The role that replaces a key where it is written down: the worklist of a workload user.
REPLACEMENT_ROLE: dict[str, str] = {
    HitSource.LAMBDA: "the function's Lambda execution role",
    HitSource.ECS: "the task definition's ECS task role (taskRoleArn)",
    HitSource.EC2_LAUNCH_TEMPLATE: "an EC2 instance profile on the launch template",
    HitSource.EC2_INSTANCE: "an EC2 instance profile on the instance",
    HitSource.CODEBUILD: "the CodeBuild project's service role",
    HitSource.SSM: "the role of whatever reads the parameter (then delete the parameter)",
    HitSource.CLOUDFORMATION: "a role for the stack's resources (drop the key parameter)",
    HitSource.WORKING_TREE: "a CI OIDC role (or the role of the runtime that runs this code)",
    HitSource.ARCHIVE: "a CI OIDC role (or the role of the runtime that runs this bundle)",
    HitSource.GIT_HISTORY: "nothing runs it any more: rotate the key, the history keeps it",
}


@dataclass(frozen=True)
class KeyOwner:
    """An access key as an inventory snapshot recorded it."""

    account_id: str
    user: str
    status: str
    user_class: str | None = None
    last_used: datetime | None = None
    snapshot_id: int | None = None


@dataclass(frozen=True)
class OrgView:
    """What the scan knows of the organization, for attributing keys not in the inventory.

    Attributes:
        accounts: Every account id of the organization (empty when it could not be read).
        in_scope: The accounts the spec's scope selects (the inventoried ones).
        management_account_id: The management account (never in scope).
    """

    accounts: frozenset[str] = frozenset()
    in_scope: frozenset[str] = frozenset()
    management_account_id: str | None = None


@dataclass(frozen=True)
class KeyFinding:
    """One stored result of a key scan: where a key (or look-alike) is, and whose it is.

    The key id is whole here because this record lives in the state DB (the tool acts on the
    key); everything that renders it for people masks it. No secret is ever held: only
    ``pair_found`` (the secret access key of the pair was found next to the id) and
    ``pair_hmac`` (its HMAC under the scan's salt, comparable within that scan only).
    """

    classification: str
    source: str
    location: str
    line: int
    key_id: str | None = None
    note: str = ""
    root: str | None = None
    commit: str | None = None
    blob: str | None = None
    history_only: bool = False
    found_in_account: str | None = None  # AWS-side sources: the account configured so
    region: str | None = None
    pair_found: bool = False
    pair_hmac: str | None = None
    owner_account_id: str | None = None
    owner_user: str | None = None
    owner_class: str | None = None
    key_status: str | None = None
    key_last_used: datetime | None = None

    @property
    def masked_key(self) -> str:
        return mask_key_id(self.key_id)

    @property
    def is_org_key(self) -> bool:
        return self.classification in ORG_KEY_CLASSES

    @property
    def is_code(self) -> bool:
        return self.source in CODE_SOURCES

    @property
    def current(self) -> bool:
        """Written down where something may still read it (not only in git history)."""
        return not self.history_only

    def where(self) -> str:
        """For people: ``root/path:line``, with the commit of a history hit."""
        if self.is_code:
            text = f"{self.root}/{self.location}" if self.root not in (None, "", ".") else ""
            text = text or self.location
            if self.commit:
                text += f" @ {self.commit[:12]}" + (" (history only)" if self.history_only else "")
            return text
        return self.location

    def __repr__(self) -> str:
        return (
            f"KeyFinding({self.classification!r}, key_id={self.masked_key!r}, "
            f"source={self.source!r}, location={self.location!r})"
        )


def account_of_key_id(key_id: str) -> str | None:
    """The account an access key id encodes, or None for ids of the older format.

    Key ids issued since about 2019 carry their account: the 16 characters after the prefix are
    base32; bits 7-46 of the first six decoded bytes are the account number (the top bit is
    set, so the first character is Q-Z or 2-7). Older ids (``AKIAI…``, ``AKIAJ…``) do not. This
    is what ``sts:GetAccessKeyInfo`` answers, computed offline: nothing is logged anywhere.
    """
    tail = key_id[4:]
    if len(tail) != 16 or tail[0] not in "QRSTUVWXYZ234567":
        return None
    try:
        raw = base64.b32decode(tail)
    except (binascii.Error, ValueError):
        return None
    number = (int.from_bytes(raw[:6], "big") & 0x7FFFFFFFFF80) >> 7
    return f"{number:012d}" if number < 10**12 else None


def inventory_index(inventories: Iterable[AccountInventory]) -> dict[str, KeyOwner]:
    """{key id: owner} of a snapshot's access keys."""
    index: dict[str, KeyOwner] = {}
    for inventory in inventories:
        for user in inventory.users:
            for key in user.access_keys:
                index[key.key_id] = KeyOwner(
                    account_id=inventory.account.account_id,
                    user=user.name,
                    status=key.status,
                    user_class=str(user.user_class) if user.user_class else None,
                    last_used=key.last_used_date,
                )
    return index


def _owner_fields(owner: KeyOwner) -> dict[str, object]:
    return {
        "owner_account_id": owner.account_id,
        "owner_user": owner.user,
        "owner_class": owner.user_class,
        "key_status": owner.status,
        "key_last_used": owner.last_used,
    }


def _attribute_key_id(
    key_id: str,
    latest: Mapping[str, KeyOwner],
    earlier: Mapping[str, KeyOwner],
    org: OrgView,
) -> tuple[str, str, dict[str, object]]:
    """(classification, note, owner fields) of one well-formed key id."""
    owner = latest.get(key_id)
    if owner is not None:
        active = owner.status == "Active"
        kind = Classification.ORG_KEY_ACTIVE if active else Classification.ORG_KEY_INACTIVE
        return kind, "", _owner_fields(owner)
    old = earlier.get(key_id)
    if old is not None:
        fields = {**_owner_fields(old), "key_status": "Deleted"}
        return (
            Classification.ORG_KEY_DELETED,
            f"in inventory snapshot {old.snapshot_id}, not in the latest: deleted since",
            fields,
        )
    temporary = key_id.startswith("ASIA")
    account = account_of_key_id(key_id)
    prefix = "temporary STS key id; " if temporary else ""
    if account is None:
        return (
            Classification.UNATTRIBUTED,
            prefix + "not in the inventory; the key id is of the older format, which does not "
            "name its account",
            {},
        )
    fields = {"owner_account_id": account}
    if account in org.accounts and account not in org.in_scope:
        what = (
            "the management account"
            if account == org.management_account_id
            else "an organization account outside the spec's scope"
        )
        return (
            Classification.OUT_OF_SCOPE_ACCOUNT,
            prefix + f"the key id encodes account {account}, {what}: not inventoried",
            fields,
        )
    if account in org.in_scope:
        return (
            Classification.UNATTRIBUTED,
            prefix + f"the key id encodes in-scope account {account}, but no inventory snapshot "
            "holds it: created since the inventory, or the account's inventory failed "
            "(run 'iamc inventory' again)",
            fields,
        )
    where = "not an account of this organization" if org.accounts else "organization not read"
    return (
        Classification.UNATTRIBUTED,
        prefix + f"the key id encodes account {account}: {where}",
        fields,
    )


def attribute(
    hits: Iterable[KeyHit],
    ignored: Iterable[IgnoredHit],
    latest: Mapping[str, KeyOwner],
    earlier: Mapping[str, KeyOwner],
    org: OrgView,
) -> list[KeyFinding]:
    """Classify every hit and look-alike of one scan.

    Args:
        hits: The scan's hits (key ids, and secrets with no key id near them).
        ignored: Look-alikes the detector set aside, with their reason.
        latest: {key id: owner} of the latest complete inventory snapshot.
        earlier: {key id: owner} of keys in earlier snapshots (most recent sighting).
        org: The organization's accounts and the scope.

    Returns:
        One finding per hit and look-alike. A secret with no key id near it takes the key id
        of the same secret found next to a key id elsewhere in the scan (same HMAC); a
        look-alike that is nevertheless an inventory key (a low-entropy or glued-on id, never
        a documentation example) is promoted to an org key, with the detector's doubt in the
        note.
    """
    hits = list(hits)
    paired: dict[str, str] = {}  # pair HMAC -> key id it was found next to
    for hit in hits:
        if hit.key_id and hit.secret_hash:
            paired.setdefault(hit.secret_hash, hit.key_id)
    found = [_hit_finding(hit, paired, latest, earlier, org) for hit in hits]
    found.extend(_look_alike_finding(item, latest, earlier, org) for item in ignored)
    return found


def _hit_finding(
    hit: KeyHit,
    paired: Mapping[str, str],
    latest: Mapping[str, KeyOwner],
    earlier: Mapping[str, KeyOwner],
    org: OrgView,
) -> KeyFinding:
    base = {
        "source": hit.source,
        "location": hit.location,
        "line": hit.line,
        "root": hit.root,
        "commit": hit.commit,
        "blob": hit.blob,
        "history_only": hit.history_only,
        "found_in_account": hit.account_id,
        "region": hit.region,
        "pair_found": hit.secret_found,
        "pair_hmac": hit.secret_hash,
    }
    key_id = hit.key_id
    note = ""
    if key_id is None and hit.secret_hash and hit.secret_hash in paired:
        key_id = paired[hit.secret_hash]
        note = f"the secret of {mask_key_id(key_id)} (the same secret is next to it elsewhere)"
    if key_id is None:
        return KeyFinding(
            Classification.UNATTRIBUTED,
            note="a secret access key with no key id near it: find whose key it is and "
            "rotate that key",
            **base,  # type: ignore[arg-type]
        )
    kind, why, owner = _attribute_key_id(key_id, latest, earlier, org)
    return KeyFinding(
        kind,
        key_id=key_id,
        note="; ".join(x for x in (note, why) if x),
        **base,  # type: ignore[arg-type]
        **owner,  # type: ignore[arg-type]
    )


def _look_alike_finding(
    item: IgnoredHit,
    latest: Mapping[str, KeyOwner],
    earlier: Mapping[str, KeyOwner],
    org: OrgView,
) -> KeyFinding:
    base = {
        "source": item.source,
        "location": item.location,
        "line": item.line,
        "root": item.root,
        "blob": item.blob,
        "found_in_account": item.account_id,
        "region": item.region,
    }
    promotable = item.reason != IgnoreReason.DOCUMENTATION_EXAMPLE
    if item.kind == "key-id" and item.key_id and promotable and item.key_id in latest:
        kind, _, owner = _attribute_key_id(item.key_id, latest, earlier, org)
        return KeyFinding(
            kind,
            key_id=item.key_id,
            note=f"an inventory key, although it looked like a look-alike ({item.reason})",
            **base,  # type: ignore[arg-type]
            **owner,  # type: ignore[arg-type]
        )
    return KeyFinding(
        Classification.IGNORED,
        # A look-alike's id is kept masked only: it is nobody's key.
        key_id=None,
        note=f"{item.kind} look-alike: {item.reason}"
        + (f" ({mask_key_id(item.key_id)})" if item.key_id else ""),
        **base,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class ScanProblem:
    """What a scan could not read (completely): ``skipped`` (a path, file, archive or ref),
    ``gap`` (an AWS-side source not implemented or denied), ``failed`` (an unreachable
    account); one line each in the report."""

    kind: str
    source: str
    location: str
    reason: str
    root: str | None = None
    account_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.root}: {self.location}" if self.root and self.root != self.location else ""
        return f"{self.kind} {where or self.location}: {self.reason}"


@dataclass(frozen=True)
class KeyAcceptance:
    """An approver's recorded decision that a user's hard-coded keys need not hold its disable
    and delete. It covers the key ids found when it was made; a key found later blocks again."""

    account_id: str
    user: str
    approver: str
    reason: str
    key_ids: tuple[str, ...]
    at: datetime
    scan_run_id: int | None = None


def code_unit(root: str) -> str:
    """The unit of a code path: a later scan of it replaces what earlier ones found there."""
    return f"code:{root}"


def code_history_unit(root: str) -> str:
    """The unit of a code path's git history: read (or refused by git) apart from its files."""
    return f"code-history:{root}"


def aws_unit(account_id: str, source: str, region: str) -> str:
    """The unit of one AWS-side source of one account in one region."""
    return f"aws:{account_id}:{source}:{region}"


def unit_of(finding: KeyFinding) -> str:
    if finding.source == HitSource.GIT_HISTORY:
        return code_history_unit(finding.root or "")
    if finding.is_code or not finding.found_in_account:
        return code_unit(finding.root or "")
    return aws_unit(finding.found_in_account, finding.source, finding.region or "")

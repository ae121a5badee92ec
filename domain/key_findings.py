"""Plain records of a hard-coded key scan: hits, ignored look-alikes, skipped inputs and gaps.

They hold no secret by construction: a secret access key found next to a key id is kept only
as ``secret_found`` and a salted hash for deduplication. Key ids are whole in the fields (the
join with the inventory needs them) and masked (``AKIA…WXYZ``) in every ``str``/``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from domain.keys import mask_key_id


class HitSource(StrEnum):
    WORKING_TREE = "working-tree"
    ARCHIVE = "archive"  # a member of an archive in the working tree
    GIT_HISTORY = "git-history"
    LAMBDA = "lambda"
    ECS = "ecs"
    EC2_LAUNCH_TEMPLATE = "ec2-launch-template"
    EC2_INSTANCE = "ec2-instance"
    SSM = "ssm"
    CLOUDFORMATION = "cloudformation"
    CODEBUILD = "codebuild"


class IgnoreReason(StrEnum):
    DOCUMENTATION_EXAMPLE = "aws-documentation-example"  # AKIAIOSFODNN7EXAMPLE, …EXAMPLEKEY
    LOW_ENTROPY = "low-entropy"  # AKIAXXXXXXXXXXXXXXXX, repeated or sequential characters
    INSIDE_WORD = "inside-a-longer-word"  # letters or digits touch the match
    GIT_SHA = "40-hex-git-sha"  # a 40-character hex string is a commit id, not a secret


@dataclass(frozen=True)
class KeyHit:
    """An access key id (and/or its secret) written down somewhere.

    Attributes:
        key_id: The whole access key id; None for a secret assigned to a secret-looking name
            with no key id near it.
        line: 1-based line in the scanned text (file, blob, archive member, rendered config).
        secret_found: A 40-character secret access key was found next to the key id (or, with
            no key id, assigned to a secret-looking name).
        secret_hash: HMAC-SHA256 of that secret under the scan's salt, for deduplication only.
        source: Where it was found (:class:`HitSource`).
        location: For people: ``path:line``, ``archive.zip!inner/path:line``, or
            ``account / Lambda function NAME (env VAR)``.
        root: The scanned root (code sources); paths in ``location`` are relative to it.
        commit: A commit in which the blob appears (history hits).
        blob: The git blob id (history hits).
        history_only: The blob is not in the current working tree.
        account_id: The member account (AWS-side sources).
        region: The region (AWS-side sources).
    """

    key_id: str | None
    line: int
    secret_found: bool = False
    secret_hash: str | None = None
    source: str = ""
    location: str = ""
    root: str | None = None
    commit: str | None = None
    blob: str | None = None
    history_only: bool = False
    account_id: str | None = None
    region: str | None = None

    def __str__(self) -> str:
        what = mask_key_id(self.key_id) if self.key_id else "secret access key"
        extra = " with its secret" if self.key_id and self.secret_found else ""
        where = self.location or f"line {self.line}"
        if self.commit:
            where += f" (commit {self.commit[:12]}{', history only' if self.history_only else ''})"
        return f"{what}{extra} at {where}"

    def __repr__(self) -> str:
        return (
            f"KeyHit(key_id={mask_key_id(self.key_id) if self.key_id else None!r}, "
            f"line={self.line}, "
            f"secret_found={self.secret_found}, source={self.source!r}, "
            f"location={self.location!r}, commit={self.commit!r}, "
            f"history_only={self.history_only})"
        )


@dataclass(frozen=True)
class IgnoredHit:
    """Something that looks like a key but is not reported: the reason says why.

    ``key_id`` is kept whole for key-id look-alikes so that the join with the inventory can
    still promote one that turns out to be an inventory key; for secret look-alikes (``kind``
    "secret") nothing of the value is kept.
    """

    kind: str  # "key-id" | "secret"
    reason: str  # an IgnoreReason value
    line: int
    key_id: str | None = None
    source: str = ""
    location: str = ""
    root: str | None = None
    blob: str | None = None  # the git blob id, for history look-alikes
    account_id: str | None = None  # AWS-side look-alikes: the account and region read
    region: str | None = None

    def __str__(self) -> str:
        what = mask_key_id(self.key_id) if self.kind == "key-id" else "secret look-alike"
        return f"ignored {what} at {self.location or f'line {self.line}'}: {self.reason}"

    def __repr__(self) -> str:
        return (
            f"IgnoredHit(kind={self.kind!r}, reason={self.reason!r}, line={self.line}, "
            f"key_id={mask_key_id(self.key_id) if self.key_id else None!r}, "
            f"location={self.location!r})"
        )


@dataclass(frozen=True)
class SkippedItem:
    """An input that was not scanned (or not completely), and why: one clear line each.

    ``failed`` marks a whole source that could not be read (git refused the repository): the
    scan run is incomplete, as when an account can't be read, and its earlier results there
    keep counting. A file, blob, archive or ref skipped on its own is not ``failed``.
    """

    location: str
    reason: str
    source: str = ""
    root: str | None = None
    failed: bool = False

    def __str__(self) -> str:
        return f"{'failed' if self.failed else 'skipped'} {self.location}: {self.reason}"


@dataclass(frozen=True)
class ScanGap:
    """An AWS-side source that could not be read in one account (not implemented, denied)."""

    account_id: str
    source: str
    operation: str
    reason: str
    region: str | None = None

    def __str__(self) -> str:
        return f"gap: {self.source} in account {self.account_id}: {self.operation}: {self.reason}"


@dataclass
class ScanStats:
    """What a scan read, for throughput figures and the report's footer."""

    files: int = 0
    bytes: int = 0
    binary_files: int = 0  # skipped by content (NUL bytes in the first block)
    archives: int = 0
    archive_members: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # AWS operation -> calls

    def add(self, other: ScanStats) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.binary_files += other.binary_files
        self.archives += other.archives
        self.archive_members += other.archive_members
        self.blobs += other.blobs
        self.blob_bytes += other.blob_bytes
        for name, count in other.calls.items():
            self.calls[name] = self.calls.get(name, 0) + count


@dataclass
class ScanResult:
    """Everything one scan (of code paths or of an account's configuration) produced."""

    hits: list[KeyHit] = field(default_factory=list)
    ignored: list[IgnoredHit] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    gaps: list[ScanGap] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)

    def extend(self, other: ScanResult) -> None:
        self.hits.extend(other.hits)
        self.ignored.extend(other.ignored)
        self.skipped.extend(other.skipped)
        self.gaps.extend(other.gaps)
        self.stats.add(other.stats)

    def key_ids(self) -> set[str]:
        return {hit.key_id for hit in self.hits if hit.key_id}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: a batch run on a work pool reports its units through the state
        DB (no secret is in here to leak: the records hold none)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanResult:
        """The result :meth:`to_dict` wrote (through JSON)."""
        return cls(
            hits=[KeyHit(**hit) for hit in data["hits"]],
            ignored=[IgnoredHit(**item) for item in data["ignored"]],
            skipped=[SkippedItem(**item) for item in data["skipped"]],
            gaps=[ScanGap(**gap) for gap in data["gaps"]],
            stats=ScanStats(**data["stats"]),
        )

"""Scan one piece of content (a file, blob or archive member) for keys, opening archives.

What every code source shares: the scan options, archive-bomb limits, binary and archive
sniffing, and how a file name the OS or git gives as bytes is shown (:func:`display_name`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from domain.key_findings import HitSource, ScanResult, SkippedItem
from scanner.key_detection import KeyDetector

log = logging.getLogger(__name__)

SNIFF_BYTES = 8192  # the first block: NUL bytes in it make a file binary (as git and rg decide)
MiB = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """Archive-bomb protection, applied per top-level archive (nested members count against it).

    Attributes:
        max_depth: Archives nested deeper than this are not opened (1 = only top-level ones).
        max_members: Members in one archive tree.
        max_total_bytes: Uncompressed bytes, declared (zip, tar) or produced (gzip), in one
            archive tree.
        max_member_bytes: Uncompressed bytes of one member.
        max_ratio: Uncompressed/compressed ratio of one member (above 1 MiB) or gzip stream.
    """

    max_depth: int = 3
    max_members: int = 20_000
    max_total_bytes: int = 512 * MiB
    max_member_bytes: int = 128 * MiB
    max_ratio: int = 200


@dataclass(frozen=True)
class ScanOptions:
    """How a code scan reads its inputs.

    Attributes:
        limits: Archive-bomb limits.
        max_file_bytes: Larger files and blobs are skipped with a reason.
        history: Also scan the git history of paths that are repositories.
        workers: ripgrep's threads, or (without ripgrep) processes scanning a huge working
            tree; None: one per core, at most 2 (the cores here).
        engine: The detection engine ("auto", "hyperscan", "re").
        prefilter: Which working-tree files are read here: "auto" (those ripgrep lists when
            it is installed, else all), "ripgrep" (fail without it), "none" (all).
    """

    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    max_file_bytes: int = 256 * MiB
    history: bool = True
    workers: int | None = None
    engine: str = "auto"
    prefilter: str = "auto"


class _ArchiveBomb(Exception):
    """An archive exceeded a limit; the message says which (no content)."""


@dataclass
class _Budget:
    members: int = 0
    bytes: int = 0


def display_name(name: str | bytes) -> str:
    """A file name as reports show it: UTF-8, other bytes escaped as ``\\xNN``.

    File names are bytes to the OS and to git, and need not be UTF-8 (``caf\\xe9.txt`` from a
    Latin-1 system); Python keeps the OS's bytes in ``str`` names as lone surrogates. Shown,
    stored or printed, such a name could not be encoded: it is shown with Python's
    ``backslashreplace`` instead (a backslash in a name is shown as it is).
    """
    if isinstance(name, str):
        if name.isascii():
            return name
        try:
            name.encode()
            return name
        except UnicodeEncodeError:
            name = os.fsencode(name)
    return name.decode("utf-8", "backslashreplace")


def is_binary(data: bytes | memoryview) -> bool:
    """Binary by content: a NUL byte in the first block."""
    return bytes(data[:SNIFF_BYTES]).find(b"\0") != -1


def archive_kind(data: bytes | memoryview) -> str | None:
    """'zip', 'gzip' or 'tar' from the magic bytes, or None."""
    head = bytes(data[:262])
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"ustar", 257):
        return "tar"
    return None


def git_blob_id(data: bytes | memoryview) -> str:
    """The id git gives this content as a blob (SHA-1 of ``blob <size>\\0<data>``)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class ContentScanner:
    """Scans one piece of content (a file, blob or member), opening archives recursively."""

    def __init__(self, detector: KeyDetector, options: ScanOptions, root: str):
        self.detector = detector
        self.options = options
        self.limits = options.limits
        self.root = root

    def scan(
        self,
        data: bytes | memoryview,
        display: str,
        result: ScanResult,
        source: str,
        depth: int = 0,
        budget: _Budget | None = None,
        **fields: object,
    ) -> bool:
        """Scan ``data`` shown as ``display``; returns whether anything was hit.

        ``display`` may hold the OS's bytes (lone surrogates): records show it escaped.
        """
        display = display_name(display)
        kind = archive_kind(data)
        if kind is not None:
            return self._archive(kind, data, display, result, source, depth, budget, **fields)
        if is_binary(data):
            result.stats.binary_files += 1
            return False
        found = self.detector.scan(data)
        for hit in found.hits:
            result.hits.append(
                replace(
                    hit,
                    source=source,
                    location=f"{display}:{hit.line}",
                    root=self.root,
                    **fields,  # type: ignore[arg-type]
                )
            )
        for ignored in found.ignored:
            result.ignored.append(
                replace(
                    ignored,
                    source=source,
                    location=f"{display}:{ignored.line}",
                    root=self.root,
                    blob=fields.get("blob"),  # type: ignore[arg-type]
                )
            )
        return bool(found.hits)

    def _skip(self, result: ScanResult, display: str, reason: str, source: str) -> None:
        log.info("skipped %s: %s", display, reason)
        result.skipped.append(SkippedItem(display, reason, source, self.root))

    def _archive(
        self,
        kind: str,
        data: bytes,
        display: str,
        result: ScanResult,
        source: str,
        depth: int,
        budget: _Budget | None,
        **fields: object,
    ) -> bool:
        if depth >= self.limits.max_depth:
            self._skip(
                result,
                display,
                f"archive bomb protection: nested deeper than {self.limits.max_depth} archives",
                source,
            )
            return False
        budget = budget if budget is not None else _Budget()
        inner_source = str(HitSource.ARCHIVE) if source == HitSource.WORKING_TREE else source
        result.stats.archives += 1
        try:
            if kind == "zip":
                members = self._zip_members(data, budget)
            elif kind == "tar":
                members = self._tar_members(data, budget)
            else:
                members = self._gzip_members(data, display, budget)
            hit = False
            for name, content in members:
                result.stats.archive_members += 1
                inner = f"{display}!{name}"
                hit |= self.scan(content, inner, result, inner_source, depth + 1, budget, **fields)
            return hit
        except _ArchiveBomb as bomb:
            self._skip(result, display, f"archive bomb protection: {bomb}", source)
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, ValueError) as err:
            self._skip(result, display, f"corrupt {kind} archive: {err}", source)
        except (RuntimeError, NotImplementedError) as err:  # encrypted or unsupported members
            self._skip(result, display, f"unreadable {kind} archive: {err}", source)
        return False

    def _count(self, budget: _Budget, members: int, size: int) -> None:
        budget.members += members
        budget.bytes += size
        if budget.members > self.limits.max_members:
            raise _ArchiveBomb(f"more than {self.limits.max_members} members")
        if budget.bytes > self.limits.max_total_bytes:
            raise _ArchiveBomb(
                f"declares more than {self.limits.max_total_bytes} bytes uncompressed"
            )

    def _zip_members(self, data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir()]
        # Check what the central directory declares before inflating a single byte.
        self._count(budget, len(infos), sum(info.file_size for info in infos))
        for info in infos:
            if info.file_size > self.limits.max_member_bytes:
                raise _ArchiveBomb(f"member {info.filename} declares {info.file_size} bytes")
            if info.file_size > MiB and info.file_size > self.limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise _ArchiveBomb(
                    f"member {info.filename} compression ratio above {self.limits.max_ratio}:1"
                )
        return self._read_zip(archive, infos)

    def _read_zip(
        self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
    ) -> Iterator[tuple[str, bytes]]:
        for info in infos:
            # ZipExtFile stops at the declared size and checks the CRC: a lying header fails.
            with archive.open(info) as member:
                yield info.filename, member.read(self.limits.max_member_bytes + 1)

    def _tar_members(self, data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            while (info := archive.next()) is not None:
                if not info.isfile():
                    continue
                if info.size > self.limits.max_member_bytes:
                    raise _ArchiveBomb(
                        f"member {display_name(info.name)} declares {info.size} bytes"
                    )
                self._count(budget, 1, info.size)
                member = archive.extractfile(info)
                if member is not None:
                    yield info.name, member.read()

    def _gzip_members(
        self, data: bytes, display: str, budget: _Budget
    ) -> Iterator[tuple[str, bytes]]:
        limit = min(self.limits.max_member_bytes, self.limits.max_total_bytes - budget.bytes)
        inflater = zlib.decompressobj(wbits=31)
        chunks: list[bytes] = []
        produced = 0
        pending: bytes | memoryview = memoryview(data)
        while not inflater.eof:
            # At most 1 MiB out per call: a bomb is caught after inflating 1 MiB past a limit.
            chunk = inflater.decompress(pending, MiB)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                raise EOFError("gzip stream ends early")
            produced += len(chunk)
            chunks.append(chunk)
            self._check_gzip(produced, limit, len(data) - len(pending))
        self._count(budget, 1, produced)
        content = b"".join(chunks)
        if archive_kind(content) == "tar":
            yield from self._tar_members(content, budget)
        else:
            # A single compressed file: name it as gunzip would.
            name = display.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
            yield name.removesuffix(".gz").removesuffix(".gzip") or "content", content

    def _check_gzip(self, produced: int, limit: int, consumed: int) -> None:
        if produced > limit:
            raise _ArchiveBomb(f"gzip stream inflates beyond {limit} bytes")
        if produced > MiB and produced > self.limits.max_ratio * consumed:
            raise _ArchiveBomb(f"gzip compression ratio above {self.limits.max_ratio}:1")


def sort_result(result: ScanResult) -> None:
    """Records in a stable order: by root, then location."""
    result.hits.sort(key=lambda h: (h.root or "", h.location, h.line))
    result.ignored.sort(key=lambda h: (h.root or "", h.location, h.line))
    result.skipped.sort(key=lambda s: (s.root or "", s.location))

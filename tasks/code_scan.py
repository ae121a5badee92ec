"""Scan local code for hard-coded AWS keys: working trees, archives in them, whole git histories.

The working tree is read from the file system (untracked and git-ignored files included: ``.env``
files are where keys hide), ``.git/`` internals excepted. Binary files are skipped by content
(a NUL byte in the first block), archives (zip/jar/war, tar, tar.gz/tgz, gz) are opened under
bomb limits. When ripgrep is installed (it is a dependency), it walks and reads the tree on
every core and lists the files that can hold a key or are archives; only those are read here,
by the same detector, so the findings are those of reading every file. The history is every
blob reachable from any ref, stash entries included, each unique blob read once through
``git rev-list --objects`` and ``git cat-file --batch``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from domain.key_findings import HitSource, ScanResult, SkippedItem
from tasks.key_detection import CANDIDATE_PATTERNS, KeyDetector

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


class _ContentScanner:
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
        """Scan ``data`` shown as ``display``; returns whether anything was hit."""
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
                    raise _ArchiveBomb(f"member {info.name} declares {info.size} bytes")
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


# -- working tree -----------------------------------------------------------------------------


def _walk(root: Path, result: ScanResult, root_label: str) -> Iterator[tuple[str, str, int]]:
    """(path, path relative to root, size) of every regular file, .git internals excepted."""
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            result.skipped.append(
                SkippedItem(prefix or ".", f"cannot list directory: {err.strerror}", "", root_label)
            )
            continue
        subdirs = []
        for entry in entries:
            if entry.name == ".git":
                continue  # repository internals (a directory, or a file in worktrees)
            relative = prefix + entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as err:
                result.skipped.append(
                    SkippedItem(relative, f"cannot stat: {err.strerror}", "", root_label)
                )
                continue
            mode = info.st_mode
            if stat.S_ISREG(mode):
                yield entry.path, relative, info.st_size
            elif stat.S_ISDIR(mode):
                subdirs.append((entry.path, relative + "/"))
            elif not stat.S_ISLNK(mode):  # links are not followed: targets are scanned in place
                result.skipped.append(
                    SkippedItem(
                        relative, "not a regular file (device, FIFO or socket)", "", root_label
                    )
                )
        stack.extend(reversed(subdirs))


# Files are read into one reusable buffer per thread: a fresh bytes object per file costs a
# page fault per 4 KiB on first touch, which measured 5x the cost of the copy itself.
_READ_BUFFERS = threading.local()
_REUSED_BUFFER_MAX = 64 * MiB


def _read_file(path: str | Path, size_limit: int) -> bytes | memoryview:
    """The content; of a large binary non-archive only the first block is read.

    Up to 64 MiB the content is a view of this thread's read buffer, valid until the thread's
    next read: use it, or copy it, before then.
    """
    # os.open/os.preadv rather than open(): no file object per file, and the GIL is released
    # while the kernel copies, so scan threads read and match at the same time.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        # Ask for the size stat gave (+1 to see growth): a larger request allocates it.
        want = min(size, size_limit) + 1
        if want > _REUSED_BUFFER_MAX:
            return _read_fresh(fd, size, want)
        buffer = getattr(_READ_BUFFERS, "buffer", None)
        if buffer is None or len(buffer) < want:
            buffer = bytearray(max(want, MiB))
            _READ_BUFFERS.buffer = buffer
        view = memoryview(buffer)
        if size > 8 * SNIFF_BYTES:
            head = view[: os.preadv(fd, [view[:SNIFF_BYTES]], 0)]
            if archive_kind(head) is None and is_binary(head):
                return head
        done = 0
        while done < want:  # a short read (signals, special file systems): read on
            read = os.preadv(fd, [view[done:want]], done)
            if not read:
                break
            done += read
        return view[:done]
    finally:
        os.close(fd)


def _read_fresh(fd: int, size: int, want: int) -> bytes:
    if size > 8 * SNIFF_BYTES:
        head = os.pread(fd, SNIFF_BYTES, 0)
        if archive_kind(head) is None and is_binary(head):
            return head
    chunks = []
    done = 0
    while done < want:
        chunk = os.pread(fd, want - done, done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


# Without ripgrep, trees of at least this many bytes are spread over worker processes (two
# forkserver workers cost ~0.3 s to start: import, Hyperscan compile). Threads do not pay:
# with 6,000 files two threads spent more CPU handing the GIL over (futex wake-ups around
# every open/read/scan) than they saved, measured with perf on this 2-core machine.
PARALLEL_MIN_BYTES = 1024 * MiB
_BATCH_BYTES = 8 * MiB
_WORKER_DETECTORS: dict[tuple[bytes, str], KeyDetector] = {}


def _scan_files(
    files: Iterable[tuple[str, str, int]],
    label: str,
    options: ScanOptions,
    detector: KeyDetector | None = None,
    salt: bytes = b"",
    blob_ids: bool = True,
) -> tuple[ScanResult, set[str]]:
    """Scan a batch of working-tree files (in this process or a worker process)."""
    if detector is None:  # in a worker: one detector per process and salt
        key = (salt, options.engine)
        detector = _WORKER_DETECTORS.get(key) or KeyDetector(salt, engine=options.engine)
        _WORKER_DETECTORS[key] = detector
    scanner = _ContentScanner(detector, options, label)
    result = ScanResult()
    hit_blobs: set[str] = set()
    source = str(HitSource.WORKING_TREE)
    for path, relative, size in files:
        if size > options.max_file_bytes:
            result.skipped.append(
                SkippedItem(relative, f"larger than {options.max_file_bytes} bytes", source, label)
            )
            continue
        try:
            data = _read_file(path, options.max_file_bytes)
        except OSError as err:
            result.skipped.append(
                SkippedItem(relative, f"cannot read: {err.strerror or err}", source, label)
            )
            continue
        result.stats.files += 1
        result.stats.bytes += size
        if scanner.scan(data, relative, result, source) and blob_ids:
            hit_blobs.add(git_blob_id(data))
    return result, hit_blobs


def _batches(files: list[tuple[str, str, int]]) -> Iterator[list[tuple[str, str, int]]]:
    batch: list[tuple[str, str, int]] = []
    size = 0
    for item in files:
        batch.append(item)
        size += item[2]
        if size >= _BATCH_BYTES or len(batch) >= 2048:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _scan_in_processes(
    files: list[tuple[str, str, int]],
    label: str,
    options: ScanOptions,
    salt: bytes,
    workers: int,
) -> tuple[ScanResult, set[str]]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    result = ScanResult()
    hit_blobs: set[str] = set()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs = [
            pool.submit(_scan_files, batch, label, options, None, salt) for batch in _batches(files)
        ]
        for job in jobs:
            partial, blobs = job.result()
            result.extend(partial)
            hit_blobs |= blobs
    return result, hit_blobs


# -- ripgrep prefilter ------------------------------------------------------------------------
# ripgrep walks, reads and matches a tree on every core with no per-file Python work, which no
# in-process design reaches here (see bench/scan.py). It only lists the files that can hold
# something: those matching a candidate pattern, and archives (by magic bytes at the start, as
# archive_kind decides). This process then reads just those and runs the same detector on them,
# so the findings are the detector's, file for file, with or without ripgrep.
# Archives by the magic bytes archive_kind reads, matched anywhere (a superset: anchoring them
# at the start of the file made ripgrep 4x slower): zip's local and end records, gzip with
# deflate (the only method RFC 1952 defines), tar's POSIX "ustar\0" and GNU "ustar  ".
_ARCHIVE_MAGIC = r"(?-u)PK\x03\x04|PK\x05\x06|\x1f\x8b\x08|ustar[\x00 ]"
_RIPGREP_ARGS = (
    "--no-config",  # ignore RIPGREP_CONFIG_PATH: no user flag may narrow the scan
    "--files-with-matches",
    "--null",
    "--no-ignore",  # .gitignore'd files too (.env files are where keys hide)
    "--hidden",
    "--glob=!.git",  # repository internals are scanned as history, not as files
    "--text",  # every byte of every file, NULs included: binary is decided here, on the head
    "--encoding=none",  # raw bytes, as the detector sees them (no UTF-16 transcoding)
)


def ripgrep_executable() -> str | None:
    """The ``rg`` of the ripgrep package installed with this tool, else one on PATH."""
    beside = Path(sys.executable).with_name("rg")
    return str(beside) if beside.is_file() else shutil.which("rg")


@dataclass
class _Ripgrep:
    process: subprocess.Popen
    errors: IO[bytes]  # its stderr: a file, not a pipe, so that many errors cannot block it


def _start_ripgrep(rg: str, root: Path, options: ScanOptions, workers: int) -> _Ripgrep:
    patterns = [*CANDIDATE_PATTERNS, _ARCHIVE_MAGIC]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _ripgrep_errors
    process = subprocess.Popen(  # noqa: S603 - rg with fixed flags; the root is an argument
        [
            rg,
            *_RIPGREP_ARGS,
            f"--threads={workers}",
            f"--max-filesize={options.max_file_bytes}",
            *(f"--regexp={pattern}" for pattern in patterns),
            "--",
            os.path.abspath(root),
        ],
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    return _Ripgrep(process, errors)


def _ripgrep_listing(rg: _Ripgrep) -> Iterator[bytes]:
    """Each path ripgrep lists, as soon as it lists it (it goes on with the others)."""
    assert rg.process.stdout is not None
    pending = b""
    while chunk := rg.process.stdout.read1(1 << 16):
        *complete, pending = (pending + chunk).split(b"\0")
        yield from complete


def _ripgrep_errors(rg: _Ripgrep, root: Path, result: ScanResult, label: str) -> bool:
    """Record what ripgrep could not read; False if it failed as a whole."""
    process = rg.process
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
    rg.errors.seek(0)
    prefix = os.path.abspath(root) + os.sep
    for line in os.fsdecode(rg.errors.read()).splitlines():
        # "rg: /abs/path: Permission denied (os error 13)": name what could not be read.
        text = line.removeprefix("rg: ")
        if text.startswith(prefix) and ": " in text:
            path, reason = text[len(prefix) :].rsplit(": ", 1)
            reason = reason.split(" (os error", 1)[0]
            result.skipped.append(
                SkippedItem(path, f"cannot read: {reason}", str(HitSource.WORKING_TREE), label)
            )
        elif line.strip():
            log.warning("ripgrep: %s", line)
    rg.errors.close()
    # 0: some file matched, 1: none did, 2: an error (an unreadable file), the rest listed.
    if process.returncode not in (0, 1, 2):
        log.warning("ripgrep failed (exit %s): scanning the rest in-process", process.returncode)
        return False
    return True


def _scan_with_ripgrep(
    rg: _Ripgrep,
    root: Path,
    files: list[tuple[str, str, int]],
    label: str,
    options: ScanOptions,
    detector: KeyDetector,
    blob_ids: bool,
) -> tuple[ScanResult, set[str]]:
    prefix = os.path.abspath(root) + os.sep
    by_relative = {item[1]: item for item in files}
    listed: set[str] = set()

    def candidates() -> Iterator[tuple[str, str, int]]:
        # Scanned here while ripgrep reads on; a file created after the walk is not the tree's.
        for path in _ripgrep_listing(rg):
            relative = os.fsdecode(path)[len(prefix) :]
            if relative in by_relative and relative not in listed:
                listed.add(relative)
                yield by_relative[relative]

    result, hit_blobs = _scan_files(candidates(), label, options, detector, blob_ids=blob_ids)
    if not _ripgrep_errors(rg, root, result, label):
        rest = [item for item in files if item[1] not in listed]
        partial, blobs = _scan_files(rest, label, options, detector, blob_ids=blob_ids)
        result.extend(partial)
        return result, hit_blobs | blobs
    unread = {s.location for s in result.skipped}
    too_large = []
    for item in files:
        if item[1] in listed or item[1] in unread:
            continue
        if item[2] > options.max_file_bytes:
            too_large.append(item)  # skipped with its reason
        else:  # ripgrep read it and found nothing
            result.stats.files += 1
            result.stats.bytes += item[2]
    result.extend(_scan_files(too_large, label, options, detector)[0])
    return result, hit_blobs


def scan_working_tree(
    root: Path,
    detector: KeyDetector,
    options: ScanOptions | None = None,
    *,
    root_label: str | None = None,
    blob_ids: bool = True,
) -> tuple[ScanResult, set[str]]:
    """Scan every file under ``root`` (untracked and ignored ones too), opening archives.

    With ripgrep (``options.prefilter``), ripgrep lists the files that can hold a key or are
    archives, using ``options.workers`` threads, and only those are read here; without it,
    every file is read here, by ``options.workers`` processes for trees of at least
    :data:`PARALLEL_MIN_BYTES` (forkserver: safe from a process with threads, such as a
    Prefect worker).

    Args:
        root: A directory.
        detector: The scan's detector (holds the salt; workers get the same salt).
        options: Limits, prefilter and worker count.
        root_label: How the root is named in records (default: ``str(root)``).
        blob_ids: Whether to compute the blob ids below (only a history scan needs them).

    Returns:
        The result, and the git blob ids of files with hits (so history hits of the same
        content are not marked history-only).
    """
    options = options or ScanOptions()
    label = root_label or str(root)
    workers = options.workers if options.workers is not None else min(2, os.cpu_count() or 1)
    rg = ripgrep_executable() if options.prefilter in ("auto", "ripgrep") else None
    if options.prefilter == "ripgrep" and rg is None:
        raise FileNotFoundError("ripgrep (rg) is not installed: pip install ripgrep")
    # ripgrep runs while this process lists the tree for its own records.
    ripgrep = _start_ripgrep(rg, root, options, workers) if rg else None
    result = ScanResult()
    files = list(_walk(root, result, label))
    if ripgrep is not None:
        partial, hit_blobs = _scan_with_ripgrep(
            ripgrep, root, files, label, options, detector, blob_ids
        )
        result.extend(partial)
    elif workers <= 1 or sum(size for _, _, size in files) < PARALLEL_MIN_BYTES:
        partial, hit_blobs = _scan_files(files, label, options, detector, blob_ids=blob_ids)
        result.extend(partial)
    else:
        try:
            partial, hit_blobs = _scan_in_processes(files, label, options, detector.salt, workers)
        except (BrokenProcessPool, OSError) as err:
            # Workers could not start (e.g. no /dev/shm, a __main__ they cannot re-import):
            # slower, not wrong.
            log.warning("scan worker processes failed (%s): scanning in-process", err)
            partial, hit_blobs = _scan_files(files, label, options, detector)
        result.extend(partial)
    _sort(result)
    return result, hit_blobs


def _sort(result: ScanResult) -> None:
    result.hits.sort(key=lambda h: (h.root or "", h.location, h.line))
    result.ignored.sort(key=lambda h: (h.root or "", h.location, h.line))
    result.skipped.sort(key=lambda s: (s.root or "", s.location))


# -- git history ------------------------------------------------------------------------------


class _Git:
    def __init__(self, repo: Path):
        self.repo = repo

    def command(self, *args: str) -> list[str]:
        return ["git", "-C", str(self.repo), "-c", "core.quotepath=off", *args]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - git with fixed arguments
            self.command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )


def is_git_repository(path: Path) -> bool:
    """Whether ``path`` is the top of a git work tree (or a bare repository)."""
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def _tips(git: _Git, result: ScanResult, label: str) -> list[str]:
    """Commit ids of every ref, HEAD and stash entry that points to an existing object."""
    listed = git.run("for-each-ref", "--format=%(objectname) %(refname)")
    for line in listed.stderr.splitlines():
        if "broken ref" in line or "does not point to a valid object" in line:
            result.skipped.append(
                SkippedItem(
                    f"git ref: {line.split(':', 1)[-1].strip()}", "broken ref", "git-history", label
                )
            )
    refs = [line.split(" ", 1) for line in listed.stdout.splitlines() if " " in line]
    head = git.run("rev-parse", "--verify", "--quiet", "HEAD")
    if head.returncode == 0:
        refs.append([head.stdout.strip(), "HEAD"])
    stash = git.run("log", "-g", "--format=%H", "refs/stash")
    if stash.returncode == 0:
        refs.extend([sha, f"stash@{{{n}}}"] for n, sha in enumerate(stash.stdout.split()))
    if not refs:
        return []
    check = git.run(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        stdin="\n".join(s for s, _ in refs) + "\n",
    )
    states = check.stdout.splitlines()
    tips: list[str] = []
    for (sha, name), state in zip(refs, states, strict=False):
        if state.endswith(" missing"):
            result.skipped.append(
                SkippedItem(
                    f"git ref {name}",
                    f"broken ref: points to missing object {sha}",
                    "git-history",
                    label,
                )
            )
        else:
            tips.append(sha)
    return sorted(set(tips))


def _blobs(git: _Git, tips: list[str]) -> tuple[dict[str, str], str]:
    """{blob id: first path it was seen at} of every blob reachable from the tips."""
    listed = git.run(
        "rev-list",
        "--objects",
        "--filter=object:type=blob",
        "--stdin",
        stdin="\n".join(tips) + "\n",
    )
    if listed.returncode != 0:
        return {}, listed.stderr.strip().splitlines()[-1] if listed.stderr.strip() else "failed"
    blobs: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        sha, sep, path = line.partition(" ")
        if sep and sha not in blobs:
            blobs[sha] = path
    return blobs, ""


def _cat_blobs(git: _Git, shas: list[str]) -> Iterator[tuple[str, bytes | None, int]]:
    """(blob id, content or None if not read, size) via one ``git cat-file --batch``."""
    process = subprocess.Popen(  # noqa: S603 - git with fixed arguments
        git.command("cat-file", "--batch"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None

    def feed() -> None:
        try:
            for sha in shas:
                process.stdin.write(sha.encode() + b"\n")  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out = process.stdout
    try:
        for sha in shas:
            header = out.readline()
            if not header:
                break
            parts = header.split()
            if len(parts) < 3 or parts[1] == b"missing":
                yield sha, None, 0
                continue
            size = int(parts[2])
            yield sha, out.read(size), size
            out.read(1)  # the newline after the content
    finally:
        out.close()
        process.wait()
        feeder.join(timeout=5)


def _introducing_commits(git: _Git, tips: list[str], wanted: set[str]) -> dict[str, str]:
    """{blob id: oldest commit that adds or changes a file to that blob}, in one history walk."""
    if not wanted:
        return {}
    walked = git.run(
        "log",
        "--raw",
        "--root",
        "--no-abbrev",
        "--no-renames",
        "--format=C %H",
        "--stdin",
        stdin="\n".join(tips) + "\n",
    )
    found: dict[str, str] = {}
    commit = ""
    for line in walked.stdout.splitlines():
        if line.startswith("C "):
            commit = line[2:]
        elif line.startswith(":"):
            fields = line.split(None, 5)
            if len(fields) >= 4 and fields[3] in wanted:
                found[fields[3]] = commit  # the log runs newest first: the last seen is oldest
    for blob in wanted - found.keys():
        # Blobs only reachable through merges or stash internals: ask git directly.
        direct = git.run("log", "--all", "--format=%H", f"--find-object={blob}")
        commits = direct.stdout.split()
        if commits:
            found[blob] = commits[-1]
    return found


def scan_git_history(
    repo: Path,
    detector: KeyDetector,
    options: ScanOptions | None = None,
    *,
    working_tree_blobs: Iterable[str] = (),
    root_label: str | None = None,
) -> ScanResult:
    """Scan every blob reachable from any ref of ``repo`` once, archives included.

    Args:
        repo: A git work tree or bare repository.
        detector: The scan's detector.
        options: Limits.
        working_tree_blobs: Blob ids of working-tree files with hits (from
            :func:`scan_working_tree`); history hits of other blobs are history-only.
        root_label: How the root is named in records.

    Returns:
        Hits with the blob, a commit that introduced it and the path; broken refs and
        unreadable blobs as skipped items.
    """
    options = options or ScanOptions()
    label = root_label or str(repo)
    result = ScanResult()
    git = _Git(repo)
    tips = _tips(git, result, label)
    if not tips:
        return result
    blobs, failure = _blobs(git, tips)
    if failure:
        result.skipped.append(
            SkippedItem("git history", f"git rev-list failed: {failure}", "git-history", label)
        )
        return result
    scanner = _ContentScanner(detector, options, label)
    source = str(HitSource.GIT_HISTORY)
    hit_blobs: set[str] = set()
    for sha, data, size in _cat_blobs(git, list(blobs)):
        path = blobs[sha]
        if data is None:
            result.skipped.append(
                SkippedItem(
                    f"{path} (blob {sha})", "blob missing from the repository", source, label
                )
            )
            continue
        if size > options.max_file_bytes:
            result.skipped.append(
                SkippedItem(
                    f"{path} (blob {sha})",
                    f"larger than {options.max_file_bytes} bytes",
                    source,
                    label,
                )
            )
            continue
        result.stats.blobs += 1
        result.stats.blob_bytes += size
        if scanner.scan(data, path, result, source, blob=sha):
            hit_blobs.add(sha)
    commits = _introducing_commits(git, tips, hit_blobs)
    current = set(working_tree_blobs)
    result.hits = [
        replace(
            hit,
            commit=commits.get(hit.blob or ""),
            history_only=hit.blob not in current,
        )
        for hit in result.hits
    ]
    _sort(result)
    return result


# -- entry point ------------------------------------------------------------------------------


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    salt: bytes | None = None,
    options: ScanOptions | None = None,
    detector: KeyDetector | None = None,
) -> ScanResult:
    """Scan each path's working tree and, for git repositories, its whole history.

    Args:
        paths: Directories or git repositories (a single file works too).
        salt: Salt for the secrets' HMAC (a random one per scan when omitted).
        options: Limits, history on/off, workers, engine.
        detector: A detector to reuse (its salt wins over ``salt``).

    Returns:
        Hits, ignored look-alikes and skipped inputs of all paths; a bad path is a skipped
        item, never an exception.
    """
    options = options or ScanOptions()
    detector = detector or KeyDetector(salt, engine=options.engine)
    total = ScanResult()
    for raw in paths:
        root = Path(raw)
        label = str(raw)
        if not root.exists():
            total.skipped.append(SkippedItem(label, "path does not exist", "", label))
            continue
        if root.is_file():
            single = ScanResult()
            scanner = _ContentScanner(detector, options, label)
            try:
                data = _read_file(root, options.max_file_bytes)
            except OSError as err:
                single.skipped.append(SkippedItem(label, f"cannot read: {err.strerror}", "", label))
            else:
                single.stats.files, single.stats.bytes = 1, len(data)
                scanner.scan(data, root.name, single, str(HitSource.WORKING_TREE))
            total.extend(single)
            continue
        history = options.history and is_git_repository(root)
        tree, hit_blobs = scan_working_tree(
            root, detector, options, root_label=label, blob_ids=history
        )
        total.extend(tree)
        if history:
            total.extend(
                scan_git_history(
                    root, detector, options, working_tree_blobs=hit_blobs, root_label=label
                )
            )
        log.info(
            "scanned %s: %d hits, %d ignored, %d skipped",
            label,
            len(tree.hits),
            len(tree.ignored),
            len(tree.skipped),
        )
    return total

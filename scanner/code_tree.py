"""Scan a working tree: every file (untracked and git-ignored ones too), archives in it.

The working tree is read from the file system (``.env`` files are where keys hide), ``.git/``
internals excepted. When ripgrep is installed (it is a dependency), it walks and reads the tree
on every core and lists the files that can hold a key or are archives; only those are read
here, by the same detector, so the findings are those of reading every file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from domain.key_findings import HitSource, ScanResult, SkippedItem
from scanner.code_content import (
    SNIFF_BYTES,
    ContentScanner,
    MiB,
    ScanOptions,
    archive_kind,
    display_name,
    git_blob_id,
    is_binary,
    sort_result,
)
from scanner.key_detection import CANDIDATE_PATTERNS, KeyDetector

log = logging.getLogger(__name__)


def _walk(root: Path, result: ScanResult, root_label: str) -> Iterator[tuple[str, str, int]]:
    """(path, path relative to root, size) of every regular file, .git internals excepted.

    Names are the OS's bytes, kept lossless in ``str`` (lone surrogates for non-UTF-8 bytes):
    records show them through :func:`display_name`.
    """
    stack = [(str(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            result.skipped.append(
                SkippedItem(
                    display_name(prefix) or ".",
                    f"cannot list directory: {err.strerror}",
                    "",
                    root_label,
                )
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
                    SkippedItem(
                        display_name(relative), f"cannot stat: {err.strerror}", "", root_label
                    )
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
                        display_name(relative),
                        "not a regular file (device, FIFO or socket)",
                        "",
                        root_label,
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
    scanner = ContentScanner(detector, options, label)
    result = ScanResult()
    hit_blobs: set[str] = set()
    source = str(HitSource.WORKING_TREE)
    for path, relative, size in files:
        if size > options.max_file_bytes:
            result.skipped.append(
                SkippedItem(
                    display_name(relative),
                    f"larger than {options.max_file_bytes} bytes",
                    source,
                    label,
                )
            )
            continue
        try:
            data = _read_file(path, options.max_file_bytes)
        except OSError as err:
            result.skipped.append(
                SkippedItem(
                    display_name(relative), f"cannot read: {err.strerror or err}", source, label
                )
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


def ripgrep_command(rg: str, root: Path, options: ScanOptions, workers: int) -> list[str]:
    """The ripgrep command that lists the files of ``root`` to read (bench/ times it alone).

    Args:
        rg: The ripgrep executable.
        root: The working tree.
        options: Its file size limit.
        workers: ripgrep's threads.

    Returns:
        The argument list: NUL-separated paths of files matching a candidate pattern or an
        archive's magic bytes, on standard output.
    """
    patterns = [*CANDIDATE_PATTERNS, _ARCHIVE_MAGIC]
    return [
        rg,
        *_RIPGREP_ARGS,
        f"--threads={workers}",
        f"--max-filesize={options.max_file_bytes}",
        *(f"--regexp={pattern}" for pattern in patterns),
        "--",
        os.path.abspath(root),
    ]


def _start_ripgrep(rg: str, root: Path, options: ScanOptions, workers: int) -> _Ripgrep:
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _ripgrep_errors
    process = subprocess.Popen(  # noqa: S603 - rg with fixed flags; the root is an argument
        ripgrep_command(rg, root, options, workers), stdout=subprocess.PIPE, stderr=errors
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
                SkippedItem(
                    display_name(path), f"cannot read: {reason}", str(HitSource.WORKING_TREE), label
                )
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
        if item[1] in listed or display_name(item[1]) in unread:
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
    sort_result(result)
    return result, hit_blobs


def scan_single_file(
    path: Path, label: str, detector: KeyDetector, options: ScanOptions
) -> ScanResult:
    """Scan one file given as a scan path (archives opened)."""
    result = ScanResult()
    scanner = ContentScanner(detector, options, label)
    try:
        data = _read_file(path, options.max_file_bytes)
    except OSError as err:
        result.skipped.append(SkippedItem(label, f"cannot read: {err.strerror}", "", label))
    else:
        result.stats.files, result.stats.bytes = 1, len(data)
        scanner.scan(data, path.name, result, str(HitSource.WORKING_TREE))
    return result

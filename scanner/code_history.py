"""Scan a whole git history: every blob reachable from any ref, stash entries included.

Each unique blob is read once, through ``git rev-list --objects`` and ``git cat-file --batch``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from domain.key_findings import HitSource, ScanResult, SkippedItem
from scanner.code_content import ContentScanner, ScanOptions, display_name, sort_result
from scanner.key_detection import KeyDetector

log = logging.getLogger(__name__)


class GitFailed(Exception):
    """git refused the repository or failed while it was read; the message is git's reason."""


class _Git:
    """git on one repository, its output as bytes: paths in it need not be UTF-8."""

    def __init__(self, repo: Path):
        self.repo = repo

    def command(self, *args: str) -> list[str]:
        return ["git", "-C", str(self.repo), "-c", "core.quotepath=off", *args]

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(  # noqa: S603 - git with fixed arguments
            self.command(*args),
            input=stdin,
            capture_output=True,
            check=False,
        )

    def failure(self, what: str, stderr: bytes) -> GitFailed:
        """git's reason, on one line, and what to do about it."""
        lines = [line.strip() for line in _text(stderr).splitlines() if line.strip()]
        if any("dubious ownership" in line for line in lines):
            # git refuses a repository another user owns (CVE-2022-24765); iamc never adds the
            # exception itself: trusting a repository is the operator's decision.
            said = next(line for line in lines if "dubious ownership" in line)
            where = _text(os.fsencode(os.path.abspath(self.repo)))
            return GitFailed(
                f"git refused the repository ({said.removeprefix('fatal: ')}: another user "
                f"owns it). If you trust it, run 'git config --global --add safe.directory "
                f"{where}' (or scan a clone you own), then 'iamc scan' again"
            )
        return GitFailed(f"git {what} failed: {' '.join(lines) or 'no reason given'}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _lines(raw: bytes) -> list[bytes]:
    return raw.splitlines()


def is_git_repository(path: Path) -> bool:
    """Whether ``path`` is the top of a git work tree (or a bare repository)."""
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def _tips(git: _Git, result: ScanResult, label: str) -> list[str]:
    """Commit ids of every ref, HEAD and stash entry that points to an existing object.

    Raises:
        GitFailed: git refused the repository (another user owns it) or could not list refs.
    """
    listed = git.run("for-each-ref", "--format=%(objectname) %(refname)")
    if listed.returncode != 0:
        raise git.failure("for-each-ref", listed.stderr)
    for line in _text(listed.stderr).splitlines():
        if "broken ref" in line or "does not point to a valid object" in line:
            result.skipped.append(
                SkippedItem(
                    f"git ref: {line.split(':', 1)[-1].strip()}", "broken ref", "git-history", label
                )
            )
    refs = [_text(line).split(" ", 1) for line in _lines(listed.stdout) if b" " in line]
    # HEAD of an unborn branch and a repository without stash fail here: nothing to add.
    head = git.run("rev-parse", "--verify", "--quiet", "HEAD")
    if head.returncode == 0:
        refs.append([_text(head.stdout).strip(), "HEAD"])
    stash = git.run("log", "-g", "--format=%H", "refs/stash")
    if stash.returncode == 0:
        refs.extend([sha, f"stash@{{{n}}}"] for n, sha in enumerate(_text(stash.stdout).split()))
    if not refs:
        return []
    check = git.run(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        stdin="".join(f"{sha}\n" for sha, _ in refs).encode(),
    )
    if check.returncode != 0:
        raise git.failure("cat-file --batch-check", check.stderr)
    states = _text(check.stdout).splitlines()
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


def _blobs(git: _Git, tips: list[str]) -> dict[str, str]:
    """{blob id: first path it was seen at, as shown} of every blob reachable from the tips.

    Raises:
        GitFailed: git could not list the objects.
    """
    listed = git.run(
        "rev-list",
        "--objects",
        "--filter=object:type=blob",
        "--stdin",
        stdin="".join(f"{tip}\n" for tip in tips).encode(),
    )
    if listed.returncode != 0:
        raise git.failure("rev-list", listed.stderr)
    blobs: dict[str, str] = {}
    for line in _lines(listed.stdout):
        sha, sep, path = line.partition(b" ")
        if sep:
            blobs.setdefault(sha.decode("ascii"), display_name(path))
    return blobs


def _blob_sizes(git: _Git, shas: list[str]) -> dict[str, int | None]:
    """{blob id: size, None if missing}, from the object headers: no content is read."""
    check = git.run(
        "cat-file",
        "--batch-check=%(objectname) %(objectsize)",
        stdin="".join(f"{sha}\n" for sha in shas).encode(),
    )
    if check.returncode != 0:
        raise git.failure("cat-file --batch-check", check.stderr)
    sizes: dict[str, int | None] = dict.fromkeys(shas)
    for line in _text(check.stdout).splitlines():
        sha, _, size = line.partition(" ")
        if size.isdigit():  # "<sha> missing" otherwise
            sizes[sha] = int(size)
    return sizes


def _cat_blobs(git: _Git, shas: list[str]) -> Iterator[tuple[str, bytes | None, int]]:
    """(blob id, content or None if missing, size) via one ``git cat-file --batch``.

    Raises:
        GitFailed: git ended before it gave every blob asked for.
    """
    process = subprocess.Popen(  # noqa: S603 - git with fixed arguments
        git.command("cat-file", "--batch"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
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
    complete = False
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
        else:
            complete = True
    finally:
        out.close()
        # Its stderr is small (git's reason); read after stdout so the two cannot deadlock.
        stderr = process.stderr.read() if process.stderr is not None else b""
        process.wait()
        feeder.join(timeout=5)
    if not complete:
        raise git.failure("cat-file --batch", stderr)


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
        stdin="".join(f"{tip}\n" for tip in tips).encode(),
    )
    found: dict[str, str] = {}
    commit = ""
    for line in _lines(walked.stdout):
        if line.startswith(b"C "):
            commit = line[2:].decode("ascii")
        elif line.startswith(b":"):
            fields = line.split(None, 5)
            blob = fields[3].decode("ascii") if len(fields) >= 4 else ""
            if blob in wanted:
                found[blob] = commit  # the log runs newest first: the last seen is oldest
    for blob in wanted - found.keys():
        # Blobs only reachable through merges or stash internals: ask git directly.
        direct = git.run("log", "--all", "--format=%H", f"--find-object={blob}")
        commits = _text(direct.stdout).split()
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
        Hits with the blob, a commit that introduced it and the path; broken refs, missing
        and oversize blobs as skipped items; a repository git refuses (another user owns it)
        or fails on as one ``failed`` skipped item, with git's reason and what to do.
    """
    options = options or ScanOptions()
    label = root_label or str(repo)
    result = ScanResult()
    git = _Git(repo)
    source = str(HitSource.GIT_HISTORY)
    try:
        tips, hit_blobs = _scan_blobs(git, result, label, ContentScanner(detector, options, label))
    except GitFailed as failed:
        log.info("git history of %s not scanned: %s", label, failed)
        result.skipped.append(SkippedItem("git history", str(failed), source, label, failed=True))
        sort_result(result)
        return result
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
    sort_result(result)
    return result


def _scan_blobs(
    git: _Git, result: ScanResult, label: str, scanner: ContentScanner
) -> tuple[list[str], set[str]]:
    """Scan every reachable blob no larger than the limit: (the tips, ids of blobs with hits).

    Sizes come from the object headers first: a blob over ``max_file_bytes`` is skipped
    without one byte of it read, so memory stays bounded by the limit.
    """
    tips = _tips(git, result, label)
    if not tips:
        return tips, set()
    blobs = _blobs(git, tips)
    limit = scanner.options.max_file_bytes
    source = str(HitSource.GIT_HISTORY)
    wanted = []
    for sha, size in _blob_sizes(git, list(blobs)).items():
        if size is None:
            reason = "blob missing from the repository"
        elif size > limit:
            reason = f"larger than {limit} bytes ({size} bytes): not read"
        else:
            wanted.append(sha)
            continue
        result.skipped.append(SkippedItem(f"{blobs[sha]} (blob {sha})", reason, source, label))
    hit_blobs: set[str] = set()
    for sha, data, size in _cat_blobs(git, wanted):
        if data is None:  # gone since the sizes were read
            result.skipped.append(
                SkippedItem(
                    f"{blobs[sha]} (blob {sha})", "blob missing from the repository", source, label
                )
            )
            continue
        result.stats.blobs += 1
        result.stats.blob_bytes += size
        if scanner.scan(data, blobs[sha], result, source, blob=sha):
            hit_blobs.add(sha)
    return tips, hit_blobs

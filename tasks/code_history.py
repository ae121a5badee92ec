"""Scan a whole git history: every blob reachable from any ref, stash entries included.

Each unique blob is read once, through ``git rev-list --objects`` and ``git cat-file --batch``.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from domain.key_findings import HitSource, ScanResult, SkippedItem
from tasks.code_content import ContentScanner, ScanOptions, sort_result
from tasks.key_detection import KeyDetector

log = logging.getLogger(__name__)


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
    scanner = ContentScanner(detector, options, label)
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
    sort_result(result)
    return result

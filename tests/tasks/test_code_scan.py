"""Code scan: working tree (ignored files too), archives under bomb limits, whole git history."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import subprocess
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

import scanner.code_tree as code_tree
from domain.key_findings import ScanResult
from scanner.code_scan import ArchiveLimits, ScanOptions, scan_git_history, scan_paths
from scanner.key_detection import KeyDetector

# Key ids and secrets made up for these tests (base32 ids, 40-character secrets).
WORKING = "AKIAQ3EGRDZ5V7WKTJNM"
IGNORED_FILE = "AKIAZ7YQ5RMWQ2XKD3VB"
HISTORY = "AKIAR5TW3NQX6MZJ2PLK"
STASHED = "AKIAM4KQ7ZXC2VBN6HJW"
TAGGED = "AKIAW2ER5TY7UI3OPLKJ"
IN_ZIP = "AKIAH6GF4DS2AQ7WE3RT"
IN_TGZ = "AKIAY5TR3EW7QZ2XC4VB"
IN_JAR = "AKIAP3OI6UY2TR7EW4QA"
SECRET = "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"
HISTORY_SECRET = "Zk3qP9vR2mW+xT4pLb8nY/cF3hJ6sD1gE5aU0oI2"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with keys in every place the scan must look."""
    root = tmp_path / "app"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "settings.py").write_text(
        f'AWS_ACCESS_KEY_ID = "{HISTORY}"\nAWS_SECRET_ACCESS_KEY = "{HISTORY_SECRET}"\n'
    )
    (root / "README.md").write_text("docs: AKIAIOSFODNN7EXAMPLE\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "add settings")
    (root / "settings.py").write_text("import os\nKEY = os.environ['AWS_ACCESS_KEY_ID']\n")
    git(root, "commit", "-qam", "remove the key")
    # A commit only a tag reaches (its branch was deleted).
    git(root, "checkout", "-q", "-b", "experiment")
    (root / "experiment.cfg").write_text(f"key={TAGGED}\n")
    git(root, "add", "experiment.cfg")
    git(root, "commit", "-qm", "experiment")
    git(root, "tag", "exp-1")
    git(root, "checkout", "-q", "main")
    git(root, "branch", "-D", "experiment")
    # A stash entry.
    (root / "settings.py").write_text(f"KEY = '{STASHED}'\n")
    git(root, "stash", "-q")
    # The working tree: tracked, untracked, ignored; text without a text extension; archives.
    (root / ".gitignore").write_text(".env\n")
    (root / ".env").write_text(
        f"AWS_ACCESS_KEY_ID={IGNORED_FILE}\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
    )
    (root / "deploy").mkdir()
    (root / "deploy" / "run.sh").write_text(f"#!/bin/sh\nexport KEY={WORKING}\n")
    (root / "data.bin").write_text(f"looks binary by name, is text: {WORKING}\n")
    (root / "image.txt").write_bytes(b"\x89PNG\0\0\0" + WORKING.encode() + b"\n")
    jar = zip_bytes({"app.properties": f"aws.key={IN_JAR}\n".encode()})
    (root / "bundle.zip").write_bytes(
        zip_bytes({"conf/creds.ini": f"key = {IN_ZIP}\n".encode(), "lib/app.jar": jar})
    )
    (root / "release.tgz").write_bytes(tgz_bytes({"etc/aws.env": f"K={IN_TGZ}\n".encode()}))
    (root / "deploy" / "boot.log.gz").write_bytes(gzip.compress(f"start\n{IN_TGZ}\n".encode()))
    return root


def hits_by_key(result: ScanResult) -> dict[str, list]:
    found: dict[str, list] = {}
    for hit in result.hits:
        found.setdefault(hit.key_id or "", []).append(hit)
    return found


def test_every_planted_key_is_found_where_it_is(repo: Path) -> None:
    result = scan_paths([repo], options=ScanOptions(workers=2))
    found = hits_by_key(result)
    where = {key: {(h.source, h.location) for h in hits} for key, hits in found.items()}
    assert ("working-tree", "deploy/run.sh:2") in where[WORKING]
    assert ("working-tree", "data.bin:1") in where[WORKING]
    assert ("working-tree", ".env:1") in where[IGNORED_FILE]
    assert ("archive", "bundle.zip!conf/creds.ini:1") in where[IN_ZIP]
    assert ("archive", "bundle.zip!lib/app.jar!app.properties:1") in where[IN_JAR]
    assert ("archive", "release.tgz!etc/aws.env:1") in where[IN_TGZ]
    assert ("archive", "deploy/boot.log.gz!boot.log:2") in where[IN_TGZ]
    assert where[HISTORY] == {("git-history", "settings.py:1")}
    assert ("git-history", "settings.py:1") in where[STASHED]
    assert where[TAGGED] == {("git-history", "experiment.cfg:1")}
    assert set(found) == {WORKING, IGNORED_FILE, IN_ZIP, IN_JAR, IN_TGZ, HISTORY, STASHED, TAGGED}
    # Binary by content (NUL in the first block), whatever its name says.
    assert WORKING not in {h.key_id for h in found[WORKING] if h.location.startswith("image")}
    assert result.stats.binary_files >= 1
    assert [i.key_id for i in result.ignored] == ["AKIAIOSFODNN7EXAMPLE"] * 2  # tree + history
    assert found[IGNORED_FILE][0].secret_found
    assert found[HISTORY][0].secret_found


def test_history_hits_carry_a_commit_and_history_only(repo: Path) -> None:
    result = scan_paths([repo])
    history = hits_by_key(result)[HISTORY][0]
    added = git(repo, "log", "--all", "--format=%H", "--diff-filter=A", "--", "settings.py")
    assert history.commit == added.split()[-1]
    assert history.history_only and history.blob
    tagged = hits_by_key(result)[TAGGED][0]
    assert tagged.commit == git(repo, "rev-parse", "exp-1")
    # A blob that is also in the working tree is not history-only.
    git(repo, "add", "deploy/run.sh")
    git(repo, "commit", "-qm", "add the deploy script")
    again = scan_paths([repo])
    tracked = [h for h in hits_by_key(again)[WORKING] if h.source == "git-history"]
    assert tracked and not any(h.history_only for h in tracked)


def test_each_unique_blob_is_read_once(repo: Path) -> None:
    listed = git(repo, "rev-list", "--objects", "--all", "--filter=object:type=blob")
    blobs = {line.split()[0] for line in listed.splitlines() if " " in line}
    result = scan_paths([repo])
    assert result.stats.blobs == len(blobs)


def test_no_secret_in_any_record(repo: Path) -> None:
    result = scan_paths([repo])
    records = [*result.hits, *result.ignored, *result.skipped]
    assert records
    for record in records:
        text = " ".join([repr(record), str(record), *map(str, dataclasses.asdict(record).values())])
        assert SECRET not in text and HISTORY_SECRET not in text
    for hit in result.hits:
        assert hit.key_id not in (str(hit) + repr(hit))


def test_missing_path_broken_ref_and_corrupt_archive_are_skipped(repo: Path) -> None:
    (repo / ".git" / "refs" / "heads" / "broken").write_text("1" * 40 + "\n")
    (repo / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"garbage" * 50)
    (repo / "truncated.tgz").write_bytes(tgz_bytes({"a": b"x" * 10_000})[:60])
    result = scan_paths([repo / "nope", repo])
    reasons = {s.location: s.reason for s in result.skipped}
    assert reasons[str(repo / "nope")] == "path does not exist"
    assert any(
        "refs/heads/broken" in s.location and "broken ref" in s.reason for s in result.skipped
    )
    assert reasons["corrupt.zip"].startswith("corrupt zip archive")
    assert reasons["truncated.tgz"].startswith("corrupt gzip archive")
    # The rest of the scan completed: history and tree hits are all there.
    assert {HISTORY, TAGGED, WORKING, IN_ZIP} <= set(hits_by_key(result))


def test_unreadable_file_is_skipped(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = repo / "deploy" / "private.env"
    secret_file.write_text(f"K={WORKING}\n")
    secret_file.chmod(0)
    if os.geteuid() == 0:  # root reads mode-000 files: make the read fail as it would for others
        real = code_tree._read_file

        def refuse(path: str | Path, limit: int) -> bytes:
            if Path(path) == secret_file:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, limit)

        monkeypatch.setattr(code_tree, "_read_file", refuse)
    result = scan_paths([repo], options=ScanOptions(history=False))
    assert [(s.location, s.reason) for s in result.skipped] == [
        ("deploy/private.env", "cannot read: Permission denied")
    ]
    assert "deploy/run.sh:2" in {h.location for h in result.hits}


def test_fifo_is_skipped_not_opened(repo: Path) -> None:
    os.mkfifo(repo / "pipe")
    result = scan_paths([repo], options=ScanOptions(history=False))
    assert ("pipe", "not a regular file (device, FIFO or socket)") in {
        (s.location, s.reason) for s in result.skipped
    }


@pytest.mark.parametrize(
    ("name", "content", "limits", "reason"),
    [
        (
            "ratio.zip",
            zip_bytes({"zeros": b"\0" * (4 * 1024 * 1024)}),
            ArchiveLimits(),
            "compression ratio above 200:1",
        ),
        (
            "declared.zip",
            zip_bytes({f"f{n}": os.urandom(2000) for n in range(5)}),
            ArchiveLimits(max_total_bytes=5000),
            "declares more than 5000 bytes uncompressed",
        ),
        (
            "many.zip",
            zip_bytes({f"f{n}": b"x" for n in range(30)}),
            ArchiveLimits(max_members=10),
            "more than 10 members",
        ),
        (
            "nested.zip",
            zip_bytes({"a.zip": zip_bytes({"b.zip": zip_bytes({"c.txt": WORKING.encode()})})}),
            ArchiveLimits(max_depth=2),
            "nested deeper than 2 archives",
        ),
        (
            "zeros.gz",
            gzip.compress(b"\0" * (8 * 1024 * 1024)),
            ArchiveLimits(),
            "gzip compression ratio above 200:1",
        ),
        (
            "big.tgz",
            tgz_bytes({"big": os.urandom(300_000)}),
            ArchiveLimits(max_member_bytes=100_000),
            "inflates beyond 100000 bytes",
        ),
    ],
)
def test_archive_bombs_become_skipped_items(
    tmp_path: Path, name: str, content: bytes, limits: ArchiveLimits, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "ok.txt").write_text(f"{WORKING}\n")
    result = scan_paths([tmp_path], options=ScanOptions(limits=limits))
    assert len(result.skipped) == 1, result.skipped
    assert result.skipped[0].reason.startswith("archive bomb protection")
    assert reason in result.skipped[0].reason
    assert [h.location for h in result.hits] == ["ok.txt:1"]


def test_re_engine_and_worker_processes_give_the_same_result(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(code_tree, "PARALLEL_MIN_BYTES", 0)  # two worker processes, tiny tree
    monkeypatch.setattr(code_tree, "_BATCH_BYTES", 100)
    parallel = scan_paths([repo], salt=b"s", options=ScanOptions(workers=2, prefilter="none"))
    plain = scan_paths(
        [repo], salt=b"s", options=ScanOptions(workers=1, engine="re", prefilter="none")
    )
    assert parallel.hits == plain.hits and parallel.hits
    assert parallel.ignored == plain.ignored
    assert parallel.stats.files == plain.stats.files


def test_ripgrep_prefilter_finds_what_reading_every_file_finds(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cases where ripgrep's defaults would differ from the detector's reading of a file.
    (repo / "late_nul.log").write_bytes(b"x" * 9000 + b"\0\n" + WORKING.encode() + b"\n")
    (repo / "wrapped.py").write_text(f'aws_secret_access_key =\n    "{SECRET}"\n')
    (repo / "wrapped.yml").write_text(f"secretKey\r\n  : {SECRET[::-1]}\r\n")
    with tarfile.open(repo / "plain.tar", "w") as archive:  # uncompressed: NULs, no magic at 0
        data = f"K={IN_TGZ}\n".encode()
        info = tarfile.TarInfo("k.env")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    (repo / "sub").mkdir()
    (repo / "sub" / ".git").write_text(f"gitdir: ../elsewhere {WORKING}\n")  # a worktree link
    (repo / "utf16.txt").write_bytes(f"key={WORKING}\n".encode("utf-16"))
    (repo / "padding.bin").write_bytes(b"\0" * 10_000)  # binary, no archive: never read here
    reads: list[str] = []
    real = code_tree._read_file

    def counting(path: str | Path, limit: int) -> bytes | memoryview:
        reads.append(str(path))
        return real(path, limit)

    monkeypatch.setattr(code_tree, "_read_file", counting)
    options = ScanOptions(history=False)
    every = scan_paths([repo], salt=b"s", options=dataclasses.replace(options, prefilter="none"))
    read_by_python = len(reads)
    reads.clear()
    listed = scan_paths(
        [repo], salt=b"s", options=dataclasses.replace(options, prefilter="ripgrep")
    )
    assert listed.hits == every.hits
    assert {h.location for h in listed.hits} >= {
        "late_nul.log:2",
        "wrapped.py:2",
        "plain.tar!k.env:1",
    }
    assert listed.ignored == every.ignored
    assert listed.skipped == every.skipped
    assert (listed.stats.files, listed.stats.bytes) == (every.stats.files, every.stats.bytes)
    # ripgrep read the rest: this process read only the files that can hold a finding.
    assert 0 < len(reads) < read_by_python
    assert not any(r.endswith(("padding.bin", ".gitignore")) for r in reads)


@pytest.mark.parametrize("prefilter", ["ripgrep", "none"])
def test_non_utf8_file_names_are_scanned_and_shown_escaped(
    repo: Path, tmp_path: Path, prefilter: str
) -> None:
    latin1 = os.fsencode(repo) + b"/caf\xe9.env"
    with open(latin1, "wb") as handle:
        handle.write(f"K={HISTORY}\n".encode())
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a Latin-1 file name")
    with open(os.fsencode(repo) + b"/big\xff.log", "wb") as handle:
        handle.write(b"x" * 200_000)
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.sh").write_text(f"K={WORKING}\n")
    options = ScanOptions(max_file_bytes=100_000, prefilter=prefilter)

    result = scan_paths([repo, other], options=options)

    where = {(h.source, h.root, h.location) for h in result.hits}
    assert ("working-tree", str(repo), "caf\\xe9.env:1") in where
    assert ("git-history", str(repo), "caf\\xe9.env:1") in where
    assert ("working-tree", str(other), "run.sh:1") in where  # the other path is scanned too
    assert ("big\\xff.log", "larger than 100000 bytes") in {
        (s.location, s.reason) for s in result.skipped
    }
    for record in [*result.hits, *result.ignored, *result.skipped]:
        str(record).encode()  # reports, CSV, SARIF, logs and the state DB can hold it


def test_a_repository_git_refuses_is_a_failed_skip_not_zero_blobs(
    repo: Path, refuse_by_git
) -> None:
    refuse_by_git(repo)

    result = scan_paths([repo])

    (refused,) = [s for s in result.skipped if s.failed]
    assert (refused.location, refused.source) == ("git history", "git-history")
    assert "dubious ownership" in refused.reason
    assert f"git config --global --add safe.directory {repo}" in refused.reason
    assert result.stats.blobs == 0
    # The working tree is still scanned; only the history is missing.
    assert ("working-tree", "deploy/run.sh:2") in {(h.source, h.location) for h in result.hits}
    assert not any(h.source == "git-history" for h in result.hits)


def test_an_oversize_history_blob_is_skipped_by_its_size_never_read(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    blob = b"# padding\n" * (400 * 1024) + f"K={HISTORY}\n".encode()  # 4 MiB, key at the end
    (root / "dump.sql").write_bytes(blob)
    (root / "small.cfg").write_text(f"K={TAGGED}\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a dump")
    git(root, "rm", "-q", "dump.sql")
    git(root, "commit", "-qm", "gone from the tree, not from the history")
    big = git(root, "rev-parse", "HEAD~1:dump.sql")
    detector = KeyDetector(b"salt")  # compiled before measuring
    options = ScanOptions(max_file_bytes=64 * 1024)

    tracemalloc.start()
    try:
        result = scan_git_history(root, detector, options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (f"dump.sql (blob {big})", f"larger than 65536 bytes ({len(blob)} bytes): not read") in {
        (s.location, s.reason) for s in result.skipped
    }
    assert [h.key_id for h in result.hits] == [TAGGED]
    assert result.stats.blobs == 1
    assert peak < len(blob) // 4, f"peak {peak} bytes: the {len(blob)}-byte blob was read"


def test_bench_corpus_findings_are_those_of_reading_every_file(tmp_path: Path) -> None:
    """The benchmark's mix (text, .env, minified JS, binaries, archives, decoys): the default
    scan (ripgrep lists, this process reads those) reports exactly what reading every file
    does, every planted key among them, and no secret in any record."""
    from bench.scan_corpus import generate_tree

    corpus, _ = generate_tree(tmp_path / "tree", 24, seed=11)
    options = ScanOptions(history=False)
    default = scan_paths([tmp_path / "tree"], salt=b"s", options=options)
    every = scan_paths(
        [tmp_path / "tree"], salt=b"s", options=dataclasses.replace(options, prefilter="none")
    )
    assert default.hits == every.hits
    assert default.ignored == every.ignored and default.ignored
    assert default.skipped == every.skipped
    # (binary_files aside: a binary file ripgrep does not list is never opened here.)
    counted = ("files", "bytes", "archives", "archive_members")
    assert [getattr(default.stats, c) for c in counted] == [
        getattr(every.stats, c) for c in counted
    ]
    found = {(h.key_id, h.location.split(":", 1)[0]) for h in default.hits}
    assert {(p.key_id, p.where) for p in corpus.planted} <= found
    assert len(default.hits) == len(corpus.planted)
    assert not any(h.key_id and "EXAMPLE" in h.key_id for h in default.hits)

"""Benchmark of the hard-coded key scan against ripgrep and detect-secrets (issue 11's figures).

``python -m bench scan`` also runs :mod:`bench.scan_command`: ``iamc scan`` of a working tree
end to end, beside ripgrep and the step overhead (issue 27's figures).

Generates, deterministically and in a temporary directory, a tree of mixed text, minified JS,
binaries and archives with planted keys and decoys, and a git repository of 2,000+ commits with
keys committed and removed again; warms the page cache; then measures, in one run:

- our scan (``scanner.code_scan``) of the tree in MB/s: the default (ripgrep lists the files that
  can hold a key, Hyperscan scans those in-process), every file read in-process, and plain ``re``;
- ``rg`` searching the same tree for the key-id pattern alone (the practical limit);
- ``detect-secrets scan --all-files`` on a proportional subset of the tree (it is ~1,000x slower;
  the subset keeps the run short) and our scan on the same subset;
- our scan of the repository's whole history in MB/s of unique blobs;
- recall and precision on the planted keys.

Run: ``.venv/bin/python -m bench.scan`` (``--help`` for sizes). Nothing is written to the
repository; the data is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import scan_command
from bench.harness import goal, run_flows_as_the_cli_does
from bench.scan_corpus import MB, Corpus, Planted, generate_repo, generate_tree
from domain.key_findings import ScanResult
from scanner import code_scan
from scanner.code_scan import ScanOptions, scan_git_history, scan_paths, scan_working_tree
from scanner.key_detection import KeyDetector

KEY_ID_REGEX = r"(AKIA|ASIA)[A-Z2-7]{16}"


def _command(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    # git, rg and detect-secrets with arguments built here, never from input.
    return subprocess.run(command, **kwargs)  # noqa: S603


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def warm(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(8 * 1024 * 1024):
                    pass


def timed(fn, repeat: int = 2):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def rg_binary() -> str | None:
    beside = Path(sys.executable).with_name("rg")
    return str(beside) if beside.exists() else shutil.which("rg")


def run_rg(rg: str, root: Path) -> int:
    done = _command(
        [rg, "--no-ignore", "--hidden", "-c", "--no-messages", "-e", KEY_ID_REGEX, str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(int(line.rsplit(":", 1)[1]) for line in done.stdout.splitlines() if ":" in line)


def subset(root: Path, target: Path, fraction: float, seed: int) -> int:
    """Copy every n-th file of each kind: the same mix, a fraction of the size."""
    rng = random.Random(seed + 2)
    copied = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if rng.random() < fraction:
            destination = target / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            copied += path.stat().st_size
    return copied


def run_detect_secrets(root: Path) -> int:
    executable = Path(sys.executable).with_name("detect-secrets")
    done = _command(
        [str(executable), "scan", "--all-files", "-n", "."],  # -n: never verify over the network
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(len(found) for found in json.loads(done.stdout)["results"].values())


def recall(planted: list[Planted], hits, history: bool = False) -> tuple[int, int, int]:
    """(found, of which secret found where planted with one, history-only flags right)."""
    found = secret_ok = flags_ok = 0
    for item in planted:
        matches = [
            h
            for h in hits
            if h.key_id == item.key_id
            and (h.location.startswith(item.where + ":") or h.location.startswith(item.where + "!"))
        ]
        if matches:
            found += 1
            secret_ok += any(h.secret_found for h in matches) == item.with_secret
            if history:
                flags_ok += any(h.history_only == item.history_only and h.commit for h in matches)
    return found, secret_ok, flags_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=520, help="tree size (default 520)")
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--subset-mb", type=float, default=3, help="detect-secrets subset")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)

    base = args.workdir or Path(tempfile.mkdtemp(prefix="iamc-bench-scan-"))
    try:
        return _run(args, base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"data kept in {base}")


def _run(args: argparse.Namespace, base: Path) -> int:
    tree, repo, small = base / "tree", base / "repo", base / "subset"
    start = time.perf_counter()
    corpus, written = generate_tree(tree, args.size_mb, args.seed)
    repo_planted = generate_repo(repo, args.commits, args.seed)
    total = tree_bytes(tree)
    print(f"generated in {time.perf_counter() - start:.1f} s under {base}")
    mix = ", ".join(f"{k} {v / total:.0%}" for k, v in written.items())
    files = sum(1 for p in tree.rglob("*") if p.is_file())
    print(f"tree: {total / MB:.0f} MB in {files} files ({mix})")
    warm(tree)
    warm(repo / ".git")

    detector = KeyDetector(engine="auto")
    ours, result = _tree_throughput(tree, total, detector)
    status = _versus_rg(tree, total, ours)
    status |= _versus_detect_secrets(args, tree, small, total, ours, detector)
    status |= _tree_recall(corpus, result)
    status |= _history_scan(repo, repo_planted, detector)
    return int(status)


def _tree_throughput(tree: Path, total: int, detector: KeyDetector) -> tuple[float, ScanResult]:
    """Our scan of the tree in MB/s, three ways; returns the default's rate and result."""
    # The default: ripgrep lists the files that can hold a key (two threads), this process
    # reads and scans those. Then the same without ripgrep, to show what it buys.
    ours_s, result = timed(
        lambda: scan_paths([tree], detector=detector, options=ScanOptions(history=False)),
        repeat=5,
    )
    ours = total / MB / ours_s
    alone_s, _ = timed(
        lambda: scan_paths(
            [tree], detector=detector, options=ScanOptions(history=False, prefilter="none")
        )
    )
    re_s, _ = timed(
        lambda: scan_paths(
            [tree], options=ScanOptions(history=False, engine="re", prefilter="none")
        ),
        repeat=1,
    )
    engine = detector.engine
    prefilter = "ripgrep lists, " if code_scan.ripgrep_executable() else "no ripgrep: "
    print(f"  iamc scan, default ({prefilter}{engine} scans): {ours:7.0f} MB/s ({ours_s:.2f} s)")
    print(
        f"  iamc scan, {engine}, every file read in-process: "
        f"{total / MB / alone_s:7.0f} MB/s ({alone_s:.2f} s)"
    )
    print(
        f"  iamc scan, re engine, every file read in-process: "
        f"{total / MB / re_s:7.0f} MB/s ({re_s:.2f} s)"
    )
    return ours, result


def _versus_rg(tree: Path, total: int, ours: float) -> bool:
    """``rg`` on the same tree for the key-id pattern alone; returns whether the goal failed."""
    rg = rg_binary()
    if not rg:
        print("  rg: not found (pip install ripgrep)")
        return False
    version = _command([rg, "--version"], capture_output=True, text=True).stdout.split()[1]
    rg_s, rg_hits = timed(lambda: run_rg(rg, tree), repeat=5)
    rg_rate = total / MB / rg_s
    print(
        f"  rg {version} (key-id pattern only): {rg_rate:7.0f} MB/s ({rg_s:.2f} s, {rg_hits} "
        f"matching lines)"
    )
    return not goal(
        "scan: working tree, share of ripgrep's throughput",
        ours / rg_rate,
        0.5,
        "x rg",
        higher_is_better=True,
        detail=f"{ours:.0f} vs {rg_rate:.0f} MB/s on {total / MB:.0f} MB",
    ).met


def _versus_detect_secrets(
    args: argparse.Namespace,
    tree: Path,
    small: Path,
    total: int,
    ours: float,
    detector: KeyDetector,
) -> bool:
    """detect-secrets and our scan on a subset of the tree; returns whether the goal failed."""
    fraction = args.subset_mb * MB / total
    copied = subset(tree, small, fraction, args.seed)
    warm(small)
    ds_s, ds_found = timed(lambda: run_detect_secrets(small), repeat=1)
    ds_rate = copied / MB / ds_s
    sub_s, _ = timed(
        lambda: scan_paths([small], detector=detector, options=ScanOptions(history=False))
    )
    print(
        f"  detect-secrets --all-files on a {copied / MB:.1f} MB subset (same mix): "
        f"{ds_rate:.2f} MB/s ({ds_s:.1f} s, {ds_found} findings); iamc on that subset "
        f"{copied / MB / sub_s:.0f} MB/s"
    )
    return not goal(
        "scan: working tree vs detect-secrets",
        ours / ds_rate,
        50,
        "x detect-secrets",
        higher_is_better=True,
    ).met


def _tree_recall(corpus: Corpus, result: ScanResult) -> bool:
    """Recall and precision on the tree's planted keys; returns whether a goal failed."""
    found, secret_ok, _ = recall(corpus.planted, result.hits)
    planted_ids = {p.key_id for p in corpus.planted}
    key_hits = [h for h in result.hits if h.key_id]
    false = [h for h in key_hits if h.key_id not in planted_ids]
    decoy_hits = [
        h for h in result.hits if any(h.location.startswith(d + ":") for d in corpus.decoys)
    ]
    precision = 1 - len(false) / max(1, len(key_hits))
    print(
        f"  recall {found}/{len(corpus.planted)} planted keys (text, .env, minified JS, archives); "
        f"secret next to it right for {secret_ok}/{found}; precision {precision:.3f} "
        f"({len(false)} unplanted key hits, {len(decoy_hits)} decoys reported, "
        f"{len(result.ignored)} look-alikes ignored with a reason); "
        f"{len(result.skipped)} skipped"
    )
    missed = not goal(
        "scan: planted keys missed (tree)", len(corpus.planted) - found, 0, "keys"
    ).met
    reported = not goal(
        "scan: decoys or unplanted ids reported as keys", len(false) + len(decoy_hits), 0, "hits"
    ).met
    return missed or reported


def _history_scan(repo: Path, repo_planted: list[Planted], detector: KeyDetector) -> bool:
    """Our scan of the repository's whole history; returns whether a goal failed."""
    commits = _command(
        ["git", "-C", str(repo), "rev-list", "--all", "--count"], capture_output=True, text=True
    ).stdout.strip()
    # The working tree's blobs with hits, as scan_paths passes them: not history-only.
    _, current = scan_working_tree(repo, detector, ScanOptions())
    history_s, history = timed(
        lambda: scan_git_history(repo, detector, ScanOptions(), working_tree_blobs=current),
        repeat=2,
    )
    blob_mb = history.stats.blob_bytes / MB
    found, _, flags_ok = recall(repo_planted, history.hits, history=True)
    false = [
        h for h in history.hits if h.key_id and h.key_id not in {p.key_id for p in repo_planted}
    ]
    print(
        f"history: {commits} commits, {history.stats.blobs} unique blobs, {blob_mb:.0f} MB: "
        f"{blob_mb / history_s:.0f} MB/s ({history_s:.2f} s, rev-list + cat-file --batch + scan)"
    )
    print(
        f"  recall {found}/{len(repo_planted)} planted keys "
        f"({sum(p.history_only for p in repo_planted)} history-only); commit and history-only "
        f"flag right for {flags_ok}/{found}; {len(false)} unplanted key hits"
    )
    missed = not goal(
        "scan: planted keys missed (history)", len(repo_planted) - found, 0, "keys"
    ).met
    return missed or bool(false)


# -- AWS side: calls per account per source and wall time, through the key-scan flow ----------

AWS_SPEC = """name = "bench-scan"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 8
[aws]
rate_limits = {{ iam = 100 }}
[scan]
aws = true
concurrency = {concurrency}
"""


def run_aws(args: argparse.Namespace) -> int:
    """Seed ``--accounts`` sandbox accounts (keys planted AWS-side), inventory them, then run
    the key-scan flow at each ``--concurrency``: calls per account per source, wall time."""
    import boto3

    from bench.harness import bench_workdir
    from flows.inventory import run_inventory
    from flows.key_scan import run_key_scan
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = bench_workdir("iamc-bench-scan-aws-")
    run_flows_as_the_cli_does("flows.inventory", "flows.key_scan")
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=args.seed)
        os.environ.update(sandbox.env())
        started = time.monotonic()
        manifest = seed_organization(
            boto3.Session(),
            accounts=args.accounts,
            users_per_account=args.users,
            seed=args.seed,
            endpoint_url=sandbox.url,
        )
        print(
            f"\nAWS side: seeded {args.accounts} accounts x {args.users} users in "
            f"{time.monotonic() - started:.1f} s; {len(manifest.planted_keys)} keys planted"
        )
        control = sandbox.middleware
        assert control is not None
        spec = workdir / "spec.toml"
        spec.write_text(AWS_SPEC.format(concurrency=1))
        run_inventory(spec)
        aws_planted = {p["key_id"] for p in manifest.planted_keys if " / " in p["where"]}
        status = 0
        for concurrency in args.concurrency:
            spec.write_text(AWS_SPEC.format(concurrency=concurrency))
            control.strictness.update({"latency_ms": args.latency_ms})
            control.recorder.reset()
            t0 = time.monotonic()
            summary = run_key_scan(spec)
            wall = time.monotonic() - t0
            control.strictness.update({"latency_ms": 0})
            accounts = summary["accounts"]
            calls = summary["calls_by_source"]
            recorded = control.recorder.snapshot()
            print(
                f"[concurrency {concurrency}, latency {args.latency_ms} ms] {accounts} accounts, "
                f"{sum(calls.values())} scan calls ({recorded['total']} at the endpoint, STS "
                f"included), wall {wall:.1f} s ({wall / max(accounts, 1):.2f} s per account); "
                f"{summary['org_keys']} org keys, {summary['gaps']} gaps, "
                f"{len(summary['accounts_failed'])} accounts failed"
            )
            print("  calls per account by source (mean):")
            for source, total in calls.items():
                print(f"    {source:22s} {total / max(accounts, 1):6.1f}")
            print(f"    {'total':22s} {sum(calls.values()) / max(accounts, 1):6.1f}")
            from state import Store

            with Store.open(f"sqlite:///{workdir / 'state.db'}") as store:
                found = {
                    f.key_id
                    for f in store.scans.key_scan_findings(summary["run_id"])
                    if f.is_org_key and not f.is_code
                }
            missing = aws_planted - found
            print(
                f"  recall {len(aws_planted) - len(missing)}/{len(aws_planted)} AWS-side planted "
                f"keys; {len(found - aws_planted)} other org keys"
            )
            status |= not goal(
                f"scan: AWS-side planted keys missed (concurrency {concurrency})",
                len(missing),
                0,
                "keys",
                detail=f"wall {wall:.1f} s for {accounts} accounts",
            ).met
            status |= bool(summary["accounts_failed"])
    return int(status)


def run(args: argparse.Namespace) -> None:
    """``python -m bench scan``: the code-scan figures, then the AWS-side figures."""
    status = 0
    if not args.skip_code:
        base = args.workdir or Path(tempfile.mkdtemp(prefix="iamc-bench-scan-"))
        try:
            status |= _run(args, base)
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    if not args.skip_command:
        status |= scan_command.run_command(args)
    if not args.skip_aws:
        status |= run_aws(args)
    if status:
        print("some targets were not met (see above)")
        sys.exit(1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``scan`` benchmark's options (shared by ``python -m bench scan``)."""
    parser.add_argument("--size-mb", type=int, default=520, help="tree size (default 520)")
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--subset-mb", type=float, default=3, help="detect-secrets subset")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--accounts", type=int, default=20, help="AWS side: member accounts")
    parser.add_argument("--users", type=int, default=12, help="AWS side: users per account")
    parser.add_argument("--latency-ms", type=int, default=20, help="AWS side: per call")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--skip-code", action="store_true", help="no code scan figures")
    parser.add_argument("--skip-command", action="store_true", help="no `iamc scan` figures")
    parser.add_argument("--skip-aws", action="store_true", help="no AWS side figures")
    scan_command.add_arguments(parser)


if __name__ == "__main__":
    sys.exit(main())

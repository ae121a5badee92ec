"""`iamc scan` of a working tree end to end, as a user runs it, beside ripgrep over that tree.

Generates a mixed working tree (:mod:`bench.scan_corpus`, 210 MB by default) and an empty one,
serves a sandbox organization of one account in this process, starts a local Prefect server as
``iamc server start`` does, runs ``iamc inventory`` once, then in each round:

- ``rg``: the very ripgrep command the scan starts (:func:`scanner.code_tree.ripgrep_command`:
  its candidate patterns and archive magic, every file, two threads), alone;
- ``iamc scan`` of a spec whose ``[scan] paths`` is the tree;
- ``iamc scan`` of the same spec on the empty tree: the step overhead (interpreter, imports,
  Prefect's flow run, the organization read, the state DB, artifacts, exit).

Both specs set ``[scan] aws = false``: the accounts' configuration scan has its own figures
(``python -m bench scan``, AWS side). The code scan's figure is the tree's command minus the
empty tree's, paired per round; wall times are medians, and ``cpu`` is the command's user+sys
time with its children (ripgrep included), steadier than wall on a shared machine.

Run: ``.venv/bin/python -m bench.scan_command [--size-mb 210] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import bench_workdir, goal, start_local_prefect_server, warm_up_prefect_server
from bench.scan_corpus import MB, generate_tree

RG_LABEL = "rg (the scan's own ripgrep command)"
BOUND_X_RG = 3.0  # the code scan's share of the command, in ripgrep times
_SPEC = """name = "bench-scan-command"
state = "sqlite:///state.db"
[scan]
aws = false
paths = [{path}]
"""
_FINDINGS = re.compile(r"code paths, 0 accounts: (.*)")
_OWN_WORK = re.compile(r"key-scan: own work ([\d.]+) s")


@dataclass
class Figures:
    """Per round: ripgrep's wall, and each command's (wall, cpu, flow body)."""

    rg: list[float] = field(default_factory=list)
    tree: list[tuple[float, float, float]] = field(default_factory=list)
    empty: list[tuple[float, float, float]] = field(default_factory=list)
    findings: set[str] = field(default_factory=set)


def _iamc() -> str:
    beside = Path(sys.executable).with_name("iamc")
    return str(beside) if beside.exists() else shutil.which("iamc") or "iamc"


def _timed(
    command: list[str], env: dict[str, str] | None, cwd: Path
) -> tuple[float, float, str, str]:
    """(wall, user+sys CPU of the process and its children, stdout, stderr) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our console script or rg, arguments built here
        command, env=env, cwd=cwd, capture_output=True, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode not in (0, 1):  # rg: 1 is "nothing matched"
        sys.stderr.write(
            done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        )
        raise SystemExit(f"{command[0]} exited {done.returncode}")
    return wall, cpu, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


def _warm(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options (``--command-*`` when added to ``python -m bench scan``)."""
    parser.add_argument("--command-size-mb", type=int, default=210, help="tree for `iamc scan`")
    parser.add_argument("--command-repeat", type=int, default=5, help="rounds of the command")


def run_command(args: argparse.Namespace) -> int:
    """Measure and print the figures; returns 1 if the goal was not met."""
    saved = dict(os.environ)  # the benchmarks after this one keep their own environment
    try:
        return _run_command(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_command(args: argparse.Namespace) -> int:
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = bench_workdir("iamc-bench-scan-command-")
    tree, empty = workdir / "tree", workdir / "empty"
    empty.mkdir()
    generate_tree(tree, args.command_size_mb, seed=11)
    size = _warm(tree)
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=args.seed)
        os.environ.update(sandbox.env())
        import boto3

        seed_organization(boto3.Session(), accounts=1, users_per_account=3, seed=args.seed,
                          endpoint_url=sandbox.url)  # fmt: skip
        env = {**os.environ, "COLUMNS": "200", "IAMC_TIMINGS": "1"}
        env.pop("PREFECT_API_URL", None)
        env.pop("PREFECT_LOGGING_LEVEL", None)
        # The commands run this checkout's code, whichever checkout the venv was installed from.
        checkout = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
        warm_up_prefect_server(start_local_prefect_server(env))
        try:
            figures = _measure(args, workdir, tree, empty, env)
        finally:
            subprocess.run([_iamc(), "server", "stop"], env=env, check=False, capture_output=True)  # noqa: S603
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return _report(figures, size)


def _measure(
    args: argparse.Namespace, workdir: Path, tree: Path, empty: Path, env: dict[str, str]
) -> Figures:
    from scanner.code_scan import ScanOptions
    from scanner.code_tree import ripgrep_command, ripgrep_executable

    rg = ripgrep_executable()
    if rg is None:
        raise SystemExit("ripgrep (rg) is not installed: pip install ripgrep")
    specs = {}
    for name, path in (("tree", tree), ("empty", empty)):
        specs[name] = workdir / f"{name}.toml"
        specs[name].write_text(_SPEC.format(path=f'"{path}"'))
    iamc = _iamc()
    _timed([iamc, "inventory", "-c", str(specs["tree"])], env, workdir)
    rg_command = ripgrep_command(rg, tree, ScanOptions(), min(2, os.cpu_count() or 1))
    figures = Figures()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    for _ in range(args.command_repeat):
        figures.rg.append(_timed(rg_command, None, workdir)[0])
        for name in ("tree", "empty"):
            wall, cpu, out, err = _timed([iamc, "scan", "-c", str(specs[name])], env, workdir)
            body = float((_OWN_WORK.findall(err) or ["nan"])[0])
            getattr(figures, name).append((wall, cpu, body))
            if name == "tree":
                figures.findings.update(_FINDINGS.findall(out))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return figures


def _paired(figures: Figures, column: int) -> float:
    """Median over rounds of the tree's command minus the empty tree's, in one column."""
    pairs = zip(figures.tree, figures.empty, strict=True)
    return statistics.median(t[column] - e[column] for t, e in pairs)


def _report(figures: Figures, size: int) -> int:
    rg = statistics.median(figures.rg)
    share = _paired(figures, 0)

    def line(name: str, rows: list[tuple[float, float, float]]) -> str:
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        body = statistics.median(r[2] for r in rows)
        rounds = " ".join(f"{r[0]:.2f}" for r in rows)
        return f"  {name:38s} {wall:6.2f} s  cpu {cpu:5.2f} s  flow body {body:5.2f} s  [{rounds}]"

    print(f"`iamc scan` of a {size / MB:.0f} MB working tree, {len(figures.rg)} rounds (medians):")
    rounds = " ".join(f"{r:.2f}" for r in figures.rg)
    print(f"  {RG_LABEL:38s} {rg:6.2f} s  [{rounds}]")
    print(line("iamc scan, tree", figures.tree))
    print(line("iamc scan, empty tree (step overhead)", figures.empty))
    print(
        f"  code scan = tree - empty, per round:   {share:6.2f} s = {share / rg:.1f}x rg; "
        f"cpu {_paired(figures, 1):+.2f} s; flow body {_paired(figures, 2):+.2f} s "
        f"= {_paired(figures, 2) / rg:.1f}x rg (steadier: no interpreter or import noise)"
    )
    print(f"  findings on the tree: {'; '.join(sorted(figures.findings))}")
    empty_wall = statistics.median(r[0] for r in figures.empty)
    return int(
        not goal(
            "scan: `iamc scan` of a working tree beyond the step overhead",
            share / rg,
            BOUND_X_RG,
            "x rg",
            detail=f"{share:.2f} s vs rg {rg:.2f} s; step overhead {empty_wall:.2f} s",
        ).met
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", dest="command_size_mb", type=int, default=210)
    parser.add_argument("--repeat", dest="command_repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

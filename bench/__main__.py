"""`make bench`: scale runs of the runbook's steps on the sandbox, reported as figures, not tests.

Each goal is printed beside its bound from the same run, and summed up at the end.
`python -m bench all` (what `make bench` runs) runs every benchmark with its defaults.

python -m bench inventory --shapes 8x25 20x50 --latency-ms 20 --concurrency 8
python -m bench plan --accounts 500 --users 20
python -m bench provision --accounts 50 --permission-sets 10 --assignments 5
python -m bench rollback --accounts 12 --permission-sets 4 --assignments 3
python -m bench scan --size-mb 520 --commits 2000 --accounts 20
python -m bench retire --accounts 20 --users 50
python -m bench commands --repeat 2
python -m bench usage --accounts 20 --users 50 --concurrency 20
python -m bench scale --accounts 200 --users 20 --latency-ms 100 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench import commands, inventory, plan, provision, retire, rollback, scale, scan, usage
from bench.harness import exit_on_sigterm, print_goals


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    sub.add_parser("all", help="every benchmark below with its defaults, then the goals")
    inventory_args = sub.add_parser(
        "inventory", help="inventory of seeded organizations: wall vs. latency bound, attributed"
    )
    inventory.add_arguments(inventory_args)
    plan_args = sub.add_parser("plan", help="plan of a synthetic inventory in the store")
    plan_args.add_argument("--accounts", type=int, default=500)
    plan_args.add_argument("--users", type=int, default=20)
    provision_args = sub.add_parser(
        "provision", help="the provision stage through apply_flow, sso-admin throttled"
    )
    provision_args.add_argument("--accounts", type=int, default=50)
    provision_args.add_argument("--permission-sets", type=int, default=10)
    provision_args.add_argument(
        "--assignments", type=int, default=5, help="users assigned each set in every account"
    )
    provision_args.add_argument(
        "--sso-rate", type=float, default=20.0, help="sandbox sso-admin rate"
    )
    provision_args.add_argument(
        "--completion-ms",
        type=int,
        default=500,
        help="sandbox: async requests complete this long after they are made (0: --polls)",
    )
    provision_args.add_argument(
        "--polls", type=int, default=2, help="IN_PROGRESS polls each, when --completion-ms 0"
    )
    rollback_args = sub.add_parser(
        "rollback", help="the provision stage applied then rolled back: wall times, ratio"
    )
    rollback.add_arguments(rollback_args)
    scan_args = sub.add_parser(
        "scan",
        help="key scan: MB/s vs rg and detect-secrets, recall; AWS-side calls and wall time",
    )
    scan.add_arguments(scan_args)
    retire_args = sub.add_parser(
        "retire", help="the disable and delete stages, IAM throttled per account"
    )
    retire_args.add_argument("--accounts", type=int, default=20)
    retire_args.add_argument("--users", type=int, default=50, help="per account")
    retire_args.add_argument(
        "--iam-rate", type=float, default=10.0, help="client IAM limit, calls/s per account"
    )
    retire_args.add_argument(
        "--sandbox-iam-rate", type=float, default=15.0, help="sandbox IAM rate per account"
    )
    retire_args.add_argument(
        "--cloudtrail-rate", type=float, default=2.0, help="LookupEvents/s per account"
    )
    usage_args = sub.add_parser(
        "usage",
        help="reading usage (Access Advisor + CloudTrail) within IAM's and CloudTrail's rates",
    )
    usage.add_arguments(usage_args)
    scale_args = sub.add_parser(
        "scale", help="inventory on a Prefect work pool with 1, 2, 4 workers: wall vs. bounds"
    )
    scale.add_arguments(scale_args)
    commands_args = sub.add_parser(
        "commands", help="each iamc command as a subprocess: overhead and wall vs. bounds"
    )
    commands.add_arguments(commands_args)
    return parser


BENCHES = {
    "commands": commands,
    "inventory": inventory,
    "plan": plan,
    "provision": provision,
    "retire": retire,
    "rollback": rollback,
    "scale": scale,
    "scan": scan,
    "usage": usage,
}


def main() -> None:
    args = _parser().parse_args()
    # Killed (SIGTERM), a benchmark still stops what it started: its `finally` blocks stop the
    # sandboxes, and atexit the local Prefect server (`iamc server stop`) and Prefect's own.
    exit_on_sigterm()
    if args.bench != "all":
        BENCHES[args.bench].run(args)
        if not print_goals():
            sys.exit(1)  # `make bench` (all) then lists this benchmark as not met
        return
    _run_all()


def _run_all() -> None:
    # Each in its own process: a bench sets up its own Prefect home, server and environment.
    failed, goal_lines = [], []
    for name in BENCHES:
        print(f"\n=== bench {name} ===", flush=True)
        child = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
            [sys.executable, "-m", "bench", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert child.stdout is not None
        try:
            for line in child.stdout:
                print(line, end="", flush=True)
                if line.startswith("  GOAL "):
                    goal_lines.append(line[len("  GOAL ") :].rstrip())
        finally:
            if child.poll() is None:  # this process is stopping: so does the benchmark
                child.terminate()
        if child.wait():
            failed.append(name)
    print("\nGoals measured in this run:")
    for line in goal_lines:
        print(f"  [{' ' if line.endswith('NOT met') or 'NOT met  (' in line else 'x'}] {line}")
    if failed:
        print(f"benchmarks with a target not met or an error: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""What the benchmarks share: a work directory with its own Prefect home, member-account clients."""

from __future__ import annotations

import importlib
import os
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3


def exit_on_sigterm() -> None:
    """SIGTERM ends a benchmark as ``sys.exit`` would (as ``iamc.serve.exit_on_sigterm``, which
    a benchmark doesn't import): ``finally`` blocks and ``atexit`` stop what it started."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def bench_workdir(prefix: str) -> Path:
    """A fresh temporary directory with its own Prefect home (results never leak between runs)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Run logs at INFO reach Prefect's API, off the console, as for an `iamc` step command
    # (iamc/cli.py): what they cost is in the figures (make exports WARNING for its targets).
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # A fresh Prefect home on a shared machine can take longer than the default 20 s to start.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return workdir


_WARM_UP = """
from prefect import flow, task
@task
def step(n): return n
@flow(name="bench-warm-up", persist_result=False)
def warm_up(): return [step(n) for n in range(3)]
warm_up()
"""


def start_local_prefect_server(env: dict[str, str]) -> str:
    """``iamc server start`` in a subprocess (a benchmark never imports the CLI); its API URL."""
    import re
    import subprocess
    import sys

    started = subprocess.run(
        [sys.executable, "-m", "iamc.cli", "server", "start"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"API (http[^\s,)]+)", started.stdout)
    if match is None:
        raise SystemExit(f"no local Prefect server: {started.stdout}{started.stderr}")
    return match.group(1)


def warm_up_prefect_server(api_url: str) -> None:
    """One throwaway flow run from another process (this one stays cold), so the benchmarks
    meet a server that has answered commands before, as operators' has: the first flow run
    after a server starts waits ~0.8 s more on the server, which no later command meets."""
    import subprocess
    import sys

    subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _WARM_UP],
        capture_output=True,
        check=True,
        env={**os.environ, "PREFECT_API_URL": api_url},
    )


def run_flows_as_the_cli_does(*flow_modules: str) -> str:
    """Flows run in this process as an ``iamc`` step command runs them: reporting to the local
    Prefect server of the bench's Prefect home (``iamc server start``, stopped at exit); the
    flow modules imported with the collector paused, then frozen (without it a run paid up to
    0.3 s of CPU in collections of the imported heap); ``engine.prefect_runtime``'s switches
    (a run ends when its final state is recorded).

    Call it before Prefect is imported: Prefect reads ``PREFECT_API_URL`` then.

    Args:
        flow_modules: The modules of the flows the benchmark runs.

    Returns:
        The API URL flows report to.
    """
    import atexit
    import subprocess
    import sys

    if not os.environ.get("PREFECT_API_URL"):
        # Registered first: a benchmark stopped while its server starts stops that one too
        # (the server is recorded as soon as it is spawned).
        atexit.register(
            subprocess.run,
            [sys.executable, "-m", "iamc.cli", "server", "stop"],
            capture_output=True,
            check=False,
            env=dict(os.environ),
        )
        os.environ["PREFECT_API_URL"] = start_local_prefect_server(dict(os.environ))
        # As iamc.prefect_server.use_local_server: the server runs this very Prefect.
        os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")
        warm_up_prefect_server(os.environ["PREFECT_API_URL"])
    from engine.prefect_runtime import imports_without_gc, prepare_flow_runs

    with imports_without_gc():
        for module in flow_modules:
            importlib.import_module(module)

    prepare_flow_runs()
    return os.environ["PREFECT_API_URL"]


def member_iam(url: str, account_id: str) -> Any:
    sts = boto3.client("sts", endpoint_url=url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="bench",
    )["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@dataclass
class Goal:
    """A figure measured in this run, beside the bound or baseline it is held to."""

    name: str
    figure: float
    bound: float
    unit: str
    higher_is_better: bool = False
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.figure >= self.bound if self.higher_is_better else self.figure <= self.bound

    def line(self) -> str:
        relation = ">=" if self.higher_is_better else "<="
        verdict = "met" if self.met else "NOT met"
        detail = f"  ({self.detail})" if self.detail else ""
        return (
            f"{self.name}: {self.figure:,.3g} {self.unit} (goal {relation} {self.bound:,.3g} "
            f"{self.unit}) -> {verdict}{detail}"
        )


GOALS: list[Goal] = []


def goal(
    name: str,
    figure: float,
    bound: float,
    unit: str,
    *,
    higher_is_better: bool = False,
    detail: str = "",
) -> Goal:
    """Record and print a goal's figure next to its bound (``make bench`` sums them up)."""
    measured = Goal(name, figure, bound, unit, higher_is_better, detail)
    GOALS.append(measured)
    print(f"  GOAL {measured.line()}")
    return measured


def print_goals() -> bool:
    """The summary of every goal measured in this process; True if all were met."""
    if not GOALS:
        return True
    print("\nGoals measured in this run:")
    for measured in GOALS:
        print(f"  [{'x' if measured.met else ' '}] {measured.line()}")
    return all(g.met for g in GOALS)

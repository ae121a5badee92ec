"""Read-only commands stay fast: they never import Prefect, boto3 or botocore (~1-2 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plans import store_provision_plan
from domain.access import AssignmentDefinition, PermissionSetDefinition
from domain.workloads import Confidence, KeyUsage, Placement, Runtime
from state import Store
from state.key_scans import KEY_SCAN_RUN
from state.workloads import WORKLOADS_RUN

HEAVY = ("prefect", "boto3", "botocore", "moto")


@pytest.fixture(scope="module")
def spec_with_a_plan(tmp_path_factory) -> tuple[Path, int, int, str]:
    """A state DB with a stored plan and a finished apply run of it (no AWS needed)."""
    workdir = tmp_path_factory.mktemp("read-only")
    spec = workdir / "spec.toml"
    spec.write_text('name = "read-only"\nstate = "sqlite:///state.db"\n')
    url = f"sqlite:///{workdir / 'state.db'}"
    plan_id = store_provision_plan(
        spec,
        url,
        "read-only",
        [
            PermissionSetDefinition(
                name="ReadOnly",
                description="read only",
                fingerprint="f" * 16,
                aws_managed_policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            )
        ],
        [AssignmentDefinition("111111111111", "ReadOnly", "USER", "u-1", "jane", "user jane")],
        approve_stage=None,
    )
    with Store.open(url) as store:
        migration_id = store.migrations.find_migration("read-only")
        assert migration_id is not None
        run_id = store.runs.start_run(
            migration_id, "apply", {"plan_id": plan_id, "stage": "provision"}
        )
        store.runs.finish_run(run_id, "succeeded", summary={})
        scan_run = store.runs.start_run(migration_id, KEY_SCAN_RUN, {})
        store.scans.save_key_scan(scan_run, [], [], [])
        store.runs.finish_run(scan_run, "succeeded", summary={})
        workloads_run = store.runs.start_run(migration_id, WORKLOADS_RUN, {})
        placement = Placement(
            "111111111111",
            "ci",
            Runtime.LAMBDA,
            Confidence.HIGH,
            ["exec-env/AWS_Lambda_python3.12 on 1 of 1 calls"],
            [KeyUsage("AKIAREADONLY00000001", "Active")],
        )
        store.workloads.save_placements(migration_id, workloads_run, [placement])
        store.runs.finish_run(workloads_run, "succeeded", summary={"accounts_failed": {}})
        plan = store.plans.get_plan(plan_id)
        assert plan is not None
        plan_hash = plan.hash
    return spec, plan_id, run_id, plan_hash


def _imported(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the CLI as a user does, with -X importtime: which top-level packages it loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "iamc.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    loaded = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, loaded


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["status", "{run}"],
        ["plan", "show", "{plan}"],
        ["plan", "show", "{plan}", "--format", "json"],
        ["report", "inventory"],
        ["report", "keys"],
        ["report", "waves"],
        ["report", "workloads"],
        [
            "approve",
            "{plan}",
            "--stage",
            "provision",
            "--by",
            "jane",
            "--ticket",
            "T-1",
            "--hash",
            "000000000000",
        ],
        [
            "approve",
            "{plan}",
            "--stage",
            "provision",
            "--by",
            "jane",
            "--ticket",
            "T-1",
            "--hash",
            "{hash}",
        ],
        ["bake", "--no-lookup"],
    ],
    ids=lambda c: " ".join(c[:2]).replace("{", "").replace("}", ""),
)
def test_read_only_commands_import_no_prefect_or_aws_sdk(spec_with_a_plan, command: list[str]):
    spec, plan_id, run_id, plan_hash = spec_with_a_plan
    args = [a.format(plan=plan_id, run=run_id, hash=plan_hash[:12]) for a in command] + [
        "-c",
        str(spec),
    ]
    done, loaded = _imported(args, spec.parent)
    refused = command[0] == "approve" and "000000000000" in command
    # The command did its real work (the refusal is the approve's real work too).
    assert done.returncode == (2 if refused else 0), done.stdout + done.stderr[-2000:]
    assert not loaded & set(HEAVY), f"iamc {' '.join(command)} imported {loaded & set(HEAVY)}"

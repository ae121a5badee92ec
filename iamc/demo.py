"""`make demo`: a seeded sandbox organization, and the runbook's steps run against it."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
from rich.console import Console
from rich.rule import Rule

DEMO_SPEC = """# The demo's migration spec: a sandbox organization on a local moto server.
name = "demo"
region = "us-east-1"
member_role = "OrganizationAccountAccessRole"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[scope]
include_accounts = ["*"]
[decommission]
inactive_days = 90
bake_days = 14
[inventory]
concurrency = 8
"""


def run_demo(
    accounts: int, users_per_account: int, seed: int, workdir: Path, console: Console
) -> None:
    """Start a sandbox, seed it, and run every step built so far against it."""
    from iamc import views
    from sandbox.run import print_summary
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "spec.toml"
    spec_path.write_text(DEMO_SPEC)
    # A fresh state per demo: the sandbox's account ids are new every time it starts.
    for stale in workdir.glob("state.db*"):
        stale.unlink()
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=seed)
        previous = {name: os.environ.get(name) for name in sandbox.env()}
        os.environ.update(sandbox.env())
        try:
            console.print(Rule("1. a seeded sandbox organization"))
            with console.status("seeding the sandbox organization…"):
                manifest = seed_organization(
                    boto3.Session(),
                    accounts=accounts,
                    users_per_account=users_per_account,
                    seed=seed,
                    samples_dir=workdir / "samples",
                    endpoint_url=sandbox.url,
                )
            print_summary(console, manifest, workdir / "samples")
            console.print(f"sandbox at {sandbox.url}; spec {spec_path}", highlight=False)

            console.print(Rule("2. inventory: iamc inventory -c " + str(spec_path)))
            views.inventory_with_progress(console, spec_path)
            console.print(Rule("3. iamc report inventory -c " + str(spec_path)))
            views.print_inventory_report(console, spec_path)
            expected = manifest.counts_by_class()
            console.print(f"seeded users by expected class: {expected}", highlight=False)

            console.print(Rule("4. identity mapping: iamc map -c " + str(spec_path)))
            views.mapping_with_status(console, spec_path)
            console.print(
                f"seeded: unmatched {manifest.unmatched_humans}, ambiguous "
                f"{sorted(manifest.ambiguous_humans)}; the IdP team's list: "
                f"iamc report mapping -c {spec_path} --unmatched --format csv",
                highlight=False,
            )

            console.print(Rule("5. the dry-run plan: iamc plan -c " + str(spec_path)))
            plan = views.plan_with_summary(console, spec_path, workdir / "plan")
            console.print(Rule(f"6. approval: iamc approve {plan['plan_id']} --stage provision"))
            if plan["blocking"]:
                console.print("[red]the plan has blocking errors: nothing to approve[/]")
            else:
                from state.approvals import record_decision

                meta = record_decision(
                    spec_path,
                    plan["plan_id"],
                    approver="demo-change-board",
                    ticket="DEMO-1",
                    stage="provision",
                    expected_hash=plan["hash"][:12],
                    comment="approved by make demo, for illustration",
                )
                approval = meta["approvals"][-1]
                console.print(
                    f"stage {approval['stage']} {approval['decision']} by {approval['approver']} "
                    f"(ticket {approval['ticket']}); a reviewer reads {plan['files']['markdown']}",
                    highlight=False,
                )
                console.print(
                    Rule(f"7. provisioning: iamc apply {plan['plan_id']} --stage provision")
                )
                applied = views.apply_with_progress(
                    console, spec_path, plan["plan_id"], "provision"
                )
                console.print(Rule(f"8. iamc status {applied['run_id']}"))
                views.print_status(console, spec_path, applied["run_id"])
                console.print(
                    "The disable and delete stages of this plan wait for their own approval "
                    "(delete not before the spec's bake_days after disable); "
                    f"undo provisioning with: iamc rollback {applied['run_id']} -c {spec_path}",
                    highlight=False,
                )
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

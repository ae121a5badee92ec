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


def demo_waves(accounts: list[str]) -> str:
    """The spec's [[waves]]: the first half of the active accounts, then the rest."""
    half = max(1, len(accounts) // 2)
    lines = []
    for n, chunk in enumerate((accounts[:half], accounts[half:]), start=1):
        if chunk:
            ids = ", ".join(f'"{a}"' for a in chunk)
            lines += ["[[waves]]", f'name = "wave-{n}"', f"include_accounts = [{ids}]"]
    return "\n".join(lines) + "\n"


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
            active = sorted(a.account_id for a in manifest.accounts if a.status == "ACTIVE")
            spec_path.write_text(DEMO_SPEC + demo_waves(active))
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

            from domain.spec import load_spec

            waves = [w.name for w in load_spec(spec_path).waves]
            for wave in waves:
                _migrate_wave(console, spec_path, workdir, wave, sandbox.url)
            console.print(Rule("iamc report waves -c " + str(spec_path)))
            views.print_waves_report(console, spec_path)
            console.print(
                "Undo a wave's provisioning with iamc rollback RUN_ID -c "
                f"{spec_path}: what another wave uses stays. The disable and delete stages of "
                "each plan wait for their own approval (delete not before the spec's bake_days "
                "after disable).",
                highlight=False,
            )
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _migrate_wave(
    console: Console, spec_path: Path, workdir: Path, wave: str, sandbox_url: str
) -> None:
    """Plan, approve and provision one wave, then say how many sets it created."""
    from iamc import views
    from sandbox.control import SandboxControl
    from state.approvals import record_decision

    control = SandboxControl(sandbox_url)
    console.print(Rule(f"{wave}: iamc plan -c {spec_path} --wave {wave}"))
    plan = views.plan_with_summary(console, spec_path, workdir / "plans" / wave, wave)
    if plan["blocking"]:
        console.print(f"[red]the plan of {wave} has blocking errors: nothing to approve[/]")
        return
    meta = record_decision(
        spec_path,
        plan["plan_id"],
        approver="demo-change-board",
        ticket=f"DEMO-{wave}",
        stage="provision",
        expected_hash=plan["hash"][:12],
        comment="approved by make demo, for illustration",
    )
    approval = meta["approvals"][-1]
    console.print(
        f"{wave}: stage {approval['stage']} {approval['decision']} by {approval['approver']} "
        f"(ticket {approval['ticket']}); a reviewer reads {plan['files']['markdown']}",
        highlight=False,
    )
    created_before = control.calls()["calls"].get("sso-admin:CreatePermissionSet", 0)
    console.print(Rule(f"{wave}: iamc apply {plan['plan_id']} -c {spec_path} --stage provision"))
    applied = views.apply_with_progress(console, spec_path, plan["plan_id"], "provision")
    created = control.calls()["calls"].get("sso-admin:CreatePermissionSet", 0) - created_before
    console.print(
        f"{wave}: {plan['permission_sets']} permission set(s) in the plan, {created} created "
        f"(CreatePermissionSet), the rest adopted from earlier waves; "
        f"{applied['adopted']} action(s) adopted",
        highlight=False,
    )
    console.print(Rule(f"{wave}: iamc status {applied['run_id']}"))
    views.print_status(console, spec_path, applied["run_id"])

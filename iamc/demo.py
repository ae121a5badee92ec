"""`make demo`: a seeded sandbox organization, and the runbook's steps run against it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from domain.central_spec import CENTRAL_ROLES, IDENTITY_CENTER
from domain.deletion import deletes_in
from domain.errors import IamcError, SandboxError
from domain.keys import mask_key_id
from domain.spec import load_spec
from domain.workloads import CREATE_WORKLOAD_ROLE
from engine.approvals import record_decision
from engine.migration import Migration
from engine.reports import load_plan
from iamc.demo_least_privilege import play_people, print_losses, usage_scene, verify_wave
from iamc.serve import exit_on_sigterm
from iamc.views.apply import apply_with_progress, print_apply_summary, print_status, watch_actions
from iamc.views.inventory import inventory_with_progress, print_inventory_report, print_waves_report
from iamc.views.mapping import mapping_with_status
from iamc.views.plan import plan_with_summary
from iamc.views.retire import bake_with_table
from iamc.views.workloads import print_workloads_report, workloads_with_progress
from sandbox.control import SandboxControl
from sandbox.demo_spec import DEMO_SPEC, demo_cis, demo_waves, demo_workloads
from sandbox.run import print_summary
from sandbox.seed import seed_organization
from sandbox.server import Sandbox


def run_demo(
    accounts: int,
    users_per_account: int,
    seed: int,
    workdir: Path,
    console: Console,
    target: str = IDENTITY_CENTER,
) -> None:
    """Start a sandbox, seed it, and run every step built so far against it.

    ``target`` is where people's access lands: Identity Center, or (``central-roles``) roles
    in each member account that the seeded identity account's people switch into.
    """
    central = target == CENTRAL_ROLES
    # Killed, it still stops its sandbox and Prefect's temporary server (an atexit handler).
    exit_on_sigterm()
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "spec.toml"
    # A fresh state per demo: the sandbox's account ids are new every time it starts.
    for stale in workdir.glob("state.db*"):
        stale.unlink()
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=seed)
        with _sandbox_environment(sandbox):
            manifest, control = _seed_scene(
                console, sandbox, spec_path, accounts, users_per_account, seed, target
            )
            _inventory_and_mapping_scenes(console, spec_path, manifest, central)

            console.print(
                Rule("6. where workload keys are used from: iamc workloads -c " + str(spec_path))
            )
            workloads_with_progress(console, spec_path)
            print_workloads_report(console, spec_path)

            usage_scene(console, spec_path)

            waves = [w.name for w in load_spec(spec_path).waves]
            plan_ids = [_migrate_wave(console, spec_path, workdir, wave, control) for wave in waves]
            console.print(Rule("after the owners' switch: iamc workloads -c " + str(spec_path)))
            workloads_with_progress(console, spec_path)
            print_workloads_report(console, spec_path)
            console.print(Rule("iamc report waves -c " + str(spec_path)))
            print_waves_report(console, spec_path)
            console.print(
                "Undo a wave's provisioning with iamc rollback RUN_ID -c "
                f"{spec_path}: what another wave uses stays.",
                highlight=False,
            )
            retire_demo(console, spec_path, [p for p in plan_ids if p is not None], sandbox)


@contextmanager
def _sandbox_environment(sandbox: Sandbox) -> Iterator[None]:
    """The sandbox's endpoint and credentials in the environment, the previous ones restored."""
    previous = {name: os.environ.get(name) for name in sandbox.env()}
    os.environ.update(sandbox.env())
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _seed_scene(
    console: Console,
    sandbox: Sandbox,
    spec_path: Path,
    accounts: int,
    users_per_account: int,
    seed: int,
    target: str,
) -> tuple[Any, SandboxControl]:
    """Step 1: seed the organization, play its workloads and people, write the demo spec."""
    console.print(Rule("1. a seeded sandbox organization"))
    with console.status("seeding the sandbox organization…"):
        manifest = seed_organization(
            boto3.Session(),
            accounts=accounts,
            users_per_account=users_per_account,
            seed=seed,
            samples_dir=spec_path.parent / "samples",
            endpoint_url=sandbox.url,
            central=target == CENTRAL_ROLES,
        )
    print_summary(console, manifest, spec_path.parent / "samples")
    control = SandboxControl(sandbox.url)
    _play_workloads(console, control, manifest)
    play_people(console, control, manifest)
    # The identity account is inventoried (its verdict) but in no wave: its users are
    # where people sign in, never migrated.
    active = sorted(
        a.account_id
        for a in manifest.accounts
        if a.status == "ACTIVE" and a.account_id != manifest.central_account
    )
    spec_path.write_text(_demo_spec(manifest, active, target))
    console.print(f"sandbox at {sandbox.url}; spec {spec_path}", highlight=False)
    return manifest, control


def _inventory_and_mapping_scenes(
    console: Console, spec_path: Path, manifest: Any, central: bool
) -> None:
    """Steps 2 to 5: inventory and its report, the identity mapping, the IdP team's fixes."""
    console.print(Rule("2. inventory: iamc inventory -c " + str(spec_path)))
    inventory_with_progress(console, spec_path)
    console.print(Rule("3. iamc report inventory -c " + str(spec_path)))
    print_inventory_report(console, spec_path)
    expected = manifest.counts_by_class()
    console.print(f"seeded users by expected class: {expected}", highlight=False)

    console.print(Rule("4. identity mapping: iamc map -c " + str(spec_path)))
    mapping_with_status(console, spec_path)
    console.print(
        f"seeded: unmatched {manifest.unmatched_humans}, ambiguous "
        f"{sorted(manifest.ambiguous_humans)}; the IdP team's list: "
        f"iamc report mapping -c {spec_path} --unmatched --format csv",
        highlight=False,
    )
    console.print(Rule("5. the IdP team works off the list; iamc map again"))
    _work_off_idp_list(console, spec_path, manifest, central)
    mapping_with_status(console, spec_path)


def _demo_spec(manifest: Any, active: list[str], target: str = IDENTITY_CENTER) -> str:
    spec = DEMO_SPEC
    if target == CENTRAL_ROLES:
        # A top-level key: before the spec's first table.
        head, table, rest = spec.partition("\n[")
        spec = (
            f'{head}\ntarget = "{CENTRAL_ROLES}"   # roles people switch into from the identity '
            f"account\n{table}{rest}"
            f'[central]\naccount = "{manifest.central_account}"\narrive = "iam-users"\n'
        )
    return (
        spec
        + demo_waves(active)
        + demo_cis(manifest, datetime.now(UTC).date())
        + demo_workloads(manifest)
    )


def _work_off_idp_list(
    console: Console, spec_path: Path, manifest: Any, central: bool = False
) -> None:
    """Play the IdP team: provision the unmatched person, and settle the ambiguous one with a
    row of the mapping overrides file the spec then names.

    With the central-roles target the identity team gives the person an IAM user (with its
    e-mail tag and an MFA device) in the identity account instead.
    """
    if central:
        _central_user_for_unmatched(console, manifest)
    store = boto3.client("identitystore", region_name="us-east-1")
    for login in [] if central else manifest.unmatched_humans:
        first, _, last = login.partition(".")
        display = f"{first.title()} {last.title()}"
        email = f"{login}@example.com"
        store.create_user(
            IdentityStoreId=manifest.identity_store_id,
            UserName=email,
            DisplayName=display,
            Name={"GivenName": first.title(), "FamilyName": last.title(), "Formatted": display},
            Emails=[{"Value": email, "Type": "work", "Primary": True}],
        )
        console.print(f"the IdP team provisioned {email} (SCIM)", highlight=False)
    rows = ["account_id,iam_user,idp_user"]
    for iam_user, candidates in sorted(manifest.ambiguous_humans.items()):
        # The employee, not the contractor of the same name: HR's record says so.
        chosen = next((c for c in candidates if "contractor" not in c), candidates[0])
        rows += [
            f"{account.account_id},{iam_user},{chosen}"
            for account in manifest.accounts
            if any(u.name == iam_user for u in account.users)
        ]
        console.print(f"the IdP team settled {iam_user} -> {chosen}", highlight=False)
    overrides = spec_path.parent / "mapping-overrides.csv"
    overrides.write_text("\n".join(rows) + "\n")
    with spec_path.open("a") as spec:
        spec.write(f'[mapping]\noverrides = "{overrides.name}"\n')


def _central_user_for_unmatched(console: Console, manifest: Any) -> None:
    """The identity team's part for the central-roles target: an IAM user per unmatched
    person in the identity account, tagged with the e-mail and with a virtual MFA device."""
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{manifest.central_account}:role/OrganizationAccountAccessRole",
        RoleSessionName="identity-team",
    )["Credentials"]
    iam = boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    for login in manifest.unmatched_humans:
        email = f"{login}@example.com"
        iam.create_user(UserName=email, Tags=[{"Key": "email", "Value": email}])
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=email)["VirtualMFADevice"]
        iam.enable_mfa_device(
            UserName=email,
            SerialNumber=device["SerialNumber"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        console.print(
            f"the identity team created {email} in the identity account "
            f"{manifest.central_account} (e-mail tag, MFA device)",
            highlight=False,
        )


def _migrate_wave(
    console: Console, spec_path: Path, workdir: Path, wave: str, control: SandboxControl
) -> int | None:
    """Plan, approve and provision one wave (saying how many sets it created), then replace
    its workloads' keys with roles."""
    console.print(Rule(f"{wave}: iamc plan -c {spec_path} --wave {wave}"))
    plan = plan_with_summary(console, spec_path, workdir / "plans" / wave, wave)
    if plan["blocking"]:
        console.print(f"[red]the plan of {wave} has blocking errors: nothing to approve[/]")
        return None
    print_losses(console, spec_path, int(plan["plan_id"]), plan["files"]["markdown"])
    meta = Migration.call(
        record_decision,
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
    central = load_spec(spec_path).target == CENTRAL_ROLES
    creation = "iam:CreateRole" if central else "sso-admin:CreatePermissionSet"
    created_before = control.calls()["calls"].get(creation, 0)
    console.print(Rule(f"{wave}: iamc apply {plan['plan_id']} -c {spec_path} --stage provision"))
    applied = apply_with_progress(console, spec_path, plan["plan_id"], "provision")
    created = control.calls()["calls"].get(creation, 0) - created_before
    if central:
        console.print(
            f"{wave}: {plan['permission_sets']} distinct access(es) in the plan; {created} "
            "member-account role(s) created (CreateRole), each trusting only its people in "
            f"the identity account, with MFA; {applied['adopted']} action(s) adopted",
            highlight=False,
        )
    else:
        console.print(
            f"{wave}: {plan['permission_sets']} permission set(s) in the plan, {created} "
            "created (CreatePermissionSet), the rest adopted from earlier waves; "
            f"{applied['adopted']} action(s) adopted",
            highlight=False,
        )
    console.print(Rule(f"{wave}: iamc status {applied['run_id']}"))
    print_status(console, spec_path, applied["run_id"])
    verify_wave(console, spec_path, wave, int(plan["plan_id"]))
    _replace_workloads(console, spec_path, plan, wave, control)
    return int(plan["plan_id"])


def _replace_workloads(
    console: Console, spec_path: Path, plan: dict[str, Any], wave: str, control: SandboxControl
) -> None:
    """Approve and apply the wave's replace stage, then play each owner moving their workload
    onto its role (the hand-off's instructions, carried out)."""
    stored, _ = Migration.call(load_plan, spec_path, int(plan["plan_id"]))
    roles = [a for a in stored.actions if a.kind == CREATE_WORKLOAD_ROLE]
    if not roles:
        return
    Migration.call(
        record_decision,
        spec_path,
        plan["plan_id"],
        approver="demo-change-board",
        ticket=f"DEMO-{wave}-roles",
        stage="replace",
        expected_hash=plan["hash"][:12],
        comment="approved by make demo, for illustration",
    )
    console.print(Rule(f"{wave}: iamc apply {plan['plan_id']} -c {spec_path} --stage replace"))
    applied = apply_with_progress(console, spec_path, plan["plan_id"], "replace")
    print_status(console, spec_path, applied["run_id"])
    # Deferred: Prefect reads its settings when imported (after the CLI set them).
    from flows.notify import notify_flow

    console.print(Rule(f"{wave}: the owners' hand-off (notify, plan {plan['plan_id']})"))
    notified = notify_flow(str(spec_path), int(plan["plan_id"]))
    if notified.get("workloads_csv"):
        console.print(
            f"{notified['workloads']} workload(s) for {notified['workload_owners']} owner(s): "
            f"what to change, per owner, in {Path(notified['workloads_csv']).parent}",
            highlight=False,
        )
    console.print(Rule(f"{wave}: the owners switch their workloads to the roles"))
    for action in roles:
        params = action.params
        try:
            control.switch_workload(
                action.account_id or "",
                params["user"],
                params["runtime"],
                repository=params.get("repository"),
            )
            outcome = "[green]switched[/]: the role is in use, the key is not"
        except SandboxError as err:
            outcome = f"[red]refused[/]: {escape(str(err))}"
        console.print(
            f"{action.account_id}/{params['user']} ({params['runtime']}) -> "
            f"{params['role_path']}{params['role_name']}: {outcome}",
            highlight=False,
        )


def _play_workloads(console: Console, control: SandboxControl, manifest: Any) -> None:
    """Play two weeks of the seeded workloads' key usage, each as its runtime makes calls (the
    sandbox's CloudTrail records them), so ``iamc workloads`` has evidence to read."""
    with console.status("playing two weeks of workload traffic…"):
        played = control.play_workload_usage(days=14, rounds=4, manifest=asdict(manifest))
    table = Table(
        title="What the sandbox played (iamc workloads is not told)", title_justify="left"
    )
    for column in ("account", "user", "played as", "calls", "user agent"):
        table.add_column(column, overflow="fold")
    for row in played["played"]:
        agents = row.get("user_agents") or [""]
        table.add_row(
            row["account_id"], row["user"], row["runtime"], str(row["calls"]), agents[0][:60]
        )
    console.print(table)


def _use_a_disabled_key(console: Console, spec_path: Path, plan_id: int, url: str) -> None:
    """Play a forgotten script: sign a request with one disabled user's (now inactive) key."""
    # Deferred: the in-process moto backend (moto's IAM models), which only this scene reads.
    from moto.iam.models import iam_backends

    plan, _ = Migration.call(load_plan, spec_path, plan_id)
    # A person's key (a forgotten script), not a workload's: workloads were switched to roles.
    people = {(u.account_id, u.user) for u in plan.users if u.outcome != "replace-with-role"}
    action = next(
        (
            a
            for a in plan.actions
            if a.kind == "deactivate-access-key" and (a.account_id, a.target) in people
        ),
        None,
    )
    if action is None:
        return
    key_id = action.params["access_key_id"]
    # The sandbox runs in this process: its moto backend knows the seeded secret.
    secret = iam_backends[action.account_id]["aws"].access_keys[key_id].secret_access_key
    script = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(user_agent="nightly-report.sh/1.4", retries={"max_attempts": 1}),
    )
    try:
        script.list_users()
    except ClientError as err:
        console.print(
            f"a forgotten script of {action.account_id}/{action.target} signs with key "
            f"{mask_key_id(key_id)}: {err.response['Error']['Code']}",
            highlight=False,
        )


def retire_demo(console: Console, spec_path: Path, plan_ids: list[int], sandbox: Any) -> None:
    """Steps 9-13 for every wave's plan: disable, the bake period, delete after it, and the
    CIS 1.21 verdicts."""
    # Deferred: Prefect reads its settings (and sets up logging) when imported, which must
    # come after the CLI's root callback set them; only the retire scenes need the flow.
    from engine.apply import apply_plan

    if not plan_ids:
        return
    for plan_id in plan_ids:
        plan, meta = Migration.call(load_plan, spec_path, plan_id)
        for stage in ("disable", "delete"):
            # Delete is approved on its own, quoting how many IAM users it deletes.
            Migration.call(
                record_decision,
                spec_path,
                plan_id,
                approver="demo-change-board",
                ticket="DEMO-2",
                stage=stage,
                expected_hash=meta["hash"][:12],
                comment="approved by make demo, for illustration",
                deletes=deletes_in(plan) if stage == "delete" else None,
            )
        console.print(Rule(f"9. disable: iamc apply {plan_id} -c {spec_path} --stage disable"))
        try:
            disabled = apply_with_progress(console, spec_path, plan_id, "disable")
            console.print(
                f"bring one person back: iamc rollback {disabled['run_id']} -c {spec_path} "
                "--user ACCOUNT/NAME",
                style="dim",
                highlight=False,
            )
        except IamcError as err:
            console.print(f"[yellow]{err}[/]", highlight=False)

    console.print(Rule(f"10. the bake period: iamc bake -c {spec_path}"))
    _use_a_disabled_key(console, spec_path, plan_ids[0], sandbox.url)
    bake_with_table(console, spec_path)

    bake_days = load_spec(spec_path).decommission.bake_days
    SandboxControl(sandbox.url).shift_clock((bake_days + 1) * 86400)
    later = datetime.now(UTC) + timedelta(days=bake_days + 1)
    for plan_id in plan_ids:
        console.print(
            Rule(
                f"11. {bake_days + 1} days later: iamc apply {plan_id} -c {spec_path} "
                "--stage delete"
            )
        )
        try:
            deleted = watch_actions(
                console,
                lambda plan_id=plan_id: apply_plan(
                    spec_path, plan_id, "delete", clock=lambda: later
                ),
            )
            print_apply_summary(console, spec_path, deleted)
        except IamcError as err:
            # Users refused by a precondition stay disabled; the message says who and why.
            console.print(f"[yellow]{err}[/]", highlight=False)
    console.print(
        f"a deleted user comes back (as far as AWS allows) with: iamc restore -c {spec_path} "
        "ACCOUNT/NAME",
        style="dim",
        highlight=False,
    )

    console.print(Rule(f"12. inventory again: iamc report inventory -c {spec_path}"))
    inventory_with_progress(console, spec_path)
    print_inventory_report(console, spec_path)

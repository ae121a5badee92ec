"""The disable and delete stages at scale, with IAM throttled per account as AWS does.

Seeds ``accounts`` x ``users`` retirable IAM users (an access key each, a console password,
an inline policy and a group membership for some), plans their retirement, then runs the
disable stage and, with the clock past the bake period, the delete stage (with one crash in
the middle and a resume). Prints calls per user by operation, wall times, and the lower
bound the per-account IAM rate imposes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from bench.harness import bench_workdir, member_iam, run_flows_as_the_cli_does

SANDBOX_PASSWORD = "Bench-Passw0rd!x"  # noqa: S105 - a sandbox user's, never real
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


def _org(url: str, accounts: int) -> list[str]:
    org = boto3.client("organizations", endpoint_url=url)
    org.create_organization(FeatureSet="ALL")
    ids = []
    for n in range(accounts):
        request = org.create_account(AccountName=f"retire-{n:03d}", Email=f"r{n}@example.com")
        ids.append(
            org.describe_create_account_status(
                CreateAccountRequestId=request["CreateAccountStatus"]["Id"]
            )["CreateAccountStatus"]["AccountId"]
        )
    return ids


def _seed(url: str, account_id: str, users: int) -> None:
    iam = member_iam(url, account_id)
    iam.create_group(GroupName="legacy-devs")
    for n in range(users):
        name = f"retiree-{n:03d}"
        iam.create_user(UserName=name)
        iam.create_access_key(UserName=name)
        if n % 2 == 0:
            iam.create_login_profile(UserName=name, Password=SANDBOX_PASSWORD)
        if n % 3 == 0:
            iam.put_user_policy(UserName=name, PolicyName="own", PolicyDocument=json.dumps(POLICY))
        if n % 4 == 0:
            iam.add_user_to_group(GroupName="legacy-devs", UserName=name)


def _plan(spec: Path, state_url: str, url: str, accounts: list[str]) -> int:
    from bench.plans import store_retire_plan
    from domain.classification import ClassificationRules
    from domain.records import Account
    from tasks.iam_users import inventory_account

    later = datetime.now(UTC) + timedelta(days=365)  # every seeded user is unused by then
    inventories = []
    sts = boto3.client("sts", endpoint_url=url)
    for account_id in accounts:
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="bench",
        )["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )
        inventories.append(
            inventory_account(session, Account(account_id), ClassificationRules(), now=later)
        )
    return store_retire_plan(spec, state_url, "bench-retire", inventories, approver="bench")


def _iam_calls(calls: dict[str, Any]) -> Counter[str]:
    return Counter(
        {k: v for k, v in calls["calls"].items() if k.startswith(("iam:", "cloudtrail:"))}
    )


def _report(
    stage: str,
    wall: float,
    calls: dict[str, Any],
    users: int,
    accounts: int,
    iam_rate: float,
    cloudtrail_rate: float,
) -> None:
    counted = _iam_calls(calls)
    other = Counter(
        {
            k: v
            for k, v in calls["calls"].items()
            if not k.startswith(("iam:", "cloudtrail:", "sts:"))
        }
    )
    print(f"\n== {stage}: {users} users in {accounts} accounts, wall {wall:.1f} s")
    print(f"  {'operation':48s} {'calls':>7s} {'per user':>9s}")
    for key, count in sorted(counted.items(), key=lambda kv: -kv[1]):
        print(f"  {key:48s} {count:7d} {count / users:9.2f}")
    iam_total = sum(v for k, v in counted.items() if k.startswith("iam:"))
    ct_total = sum(v for k, v in counted.items() if k.startswith("cloudtrail:"))
    print(f"  {'iam total':48s} {iam_total:7d} {iam_total / users:9.2f}")
    if ct_total:
        print(f"  {'cloudtrail total':48s} {ct_total:7d} {ct_total / users:9.2f}")
    if other:
        print(f"  other (resource-policy reads, ...): {dict(other)}")
    print(f"  throttled attempts: {calls['throttled_total']}, errors: {dict(calls['errors'])}")
    by_account = calls["by_account"]
    busiest = max(
        (
            (sum(v for k, v in c.items() if k.startswith("iam:")), account)
            for account, c in by_account.items()
        ),
        default=(0, "-"),
    )
    busiest_ct = max(
        (
            (sum(v for k, v in c.items() if k.startswith("cloudtrail:")), account)
            for account, c in by_account.items()
        ),
        default=(0, "-"),
    )
    bound_iam = busiest[0] / iam_rate
    bound_ct = busiest_ct[0] / cloudtrail_rate if busiest_ct[0] else 0.0
    bound = max(bound_iam, bound_ct)
    print(
        f"  lower bound: busiest account {busiest[1]} made {busiest[0]} IAM calls at "
        f"{iam_rate:g}/s = {bound_iam:.1f} s"
        + (
            f"; {busiest_ct[0]} LookupEvents at {cloudtrail_rate:g}/s = {bound_ct:.1f} s"
            if busiest_ct[0]
            else ""
        )
    )
    print(f"  wall / bound = {wall:.1f} / {bound:.1f} = {wall / bound if bound else 0:.2f}")


def _crash_point(plan: Any, accounts: list[str], users: int) -> Any:
    """The delete action to crash after: a DeleteAccessKey mid-way through the middle account."""
    from domain.plan import Stage

    return next(
        a
        for a in plan.actions
        if a.stage == Stage.DELETE
        and a.kind == "delete-access-key"
        and a.account_id == accounts[len(accounts) // 2]
        and a.target == f"retiree-{users // 2:03d}"
    )


def _check_nothing_sent_twice(
    plan: Any, calls: dict[str, Any], users: int, url: str, accounts: list[str]
) -> None:
    """One DeleteUser per user and one DeleteAccessKey per key, and no user left."""
    keys = sum(len(a.params["items"]) for a in plan.actions if a.kind == "delete-access-key")
    sent = calls["calls"]
    print(
        f"  no mutation twice: DeleteUser {sent.get('iam:DeleteUser', 0)} for {users} users, "
        f"DeleteAccessKey {sent.get('iam:DeleteAccessKey', 0)} for {keys} keys"
    )
    assert sent.get("iam:DeleteUser", 0) == users
    assert sent.get("iam:DeleteAccessKey", 0) == keys
    left = sum(len(member_iam(url, a).list_users()["Users"]) for a in accounts)
    print(f"  IAM users left in the member accounts: {left}")


def _write_spec(spec: Path, args: argparse.Namespace) -> None:
    # The client-side IAM limit is what an operator would run with (spec default 10/s).
    # The blast-radius cap is raised to the bench's size, as an operator would in a reviewed
    # spec change; the default (50 per run, 20 per account) would stop the delete run.
    spec.write_text(
        'name = "bench-retire"\nstate = "sqlite:///state.db"\n'
        f"[decommission]\nmax_deletes_per_run = {args.accounts * args.users}\n"
        f"max_deletes_per_account = {args.users}\n"
        f"[aws]\nrate_limits = {{ iam = {args.iam_rate:g}, "
        f"cloudtrail = {args.cloudtrail_rate:g} }}\n"
    )


def _throttle(control: Any, args: argparse.Namespace) -> None:
    control.strictness.update(
        {"throttle": {"iam": args.sandbox_iam_rate, "cloudtrail": args.cloudtrail_rate}}
    )
    print(
        f"sandbox: IAM throttled at {args.sandbox_iam_rate:g} req/s per account, "
        f"CloudTrail at {args.cloudtrail_rate:g}/s per account; client limits "
        f"iam {args.iam_rate:g}/s, cloudtrail {args.cloudtrail_rate:g}/s per account"
    )


def run(args: argparse.Namespace) -> None:
    """Disable and delete ``accounts`` x ``users`` IAM users on the throttled sandbox."""
    import sandbox.strict as strict
    from domain.plan import Stage
    from engine.executor import AFTER_CALL, InjectedCrash
    from engine.migration import Migration
    from engine.reports import load_plan
    from flows.apply import apply_plan
    from sandbox.server import Sandbox
    from stages import retire

    workdir = bench_workdir("iamc-bench-retire-")
    run_flows_as_the_cli_does("stages.retire", "flows.apply")
    spec = workdir / "spec.toml"
    _write_spec(spec, args)
    state_url = f"sqlite:///{workdir / 'state.db'}"
    # IAM throttles per account: the sandbox keeps one bucket per account for it too.
    strict._PER_ACCOUNT_REGION = frozenset({*strict._PER_ACCOUNT_REGION, "iam"})
    retire.RETIRE_ACCOUNT_CONCURRENCY = args.accounts
    later = datetime.now(UTC) + timedelta(days=30)
    users = args.accounts * args.users
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=13)
        os.environ.update(sandbox.env())
        control = sandbox.middleware
        assert control is not None
        t0 = time.monotonic()
        accounts = _org(sandbox.url, args.accounts)
        for account_id in accounts:
            _seed(sandbox.url, account_id, args.users)
        plan_id = _plan(spec, state_url, sandbox.url, accounts)
        plan, _ = Migration.call(load_plan, spec, plan_id)
        print(
            f"set up {len(accounts)} accounts x {args.users} users, plan {plan_id}: "
            f"{sum(a.stage == Stage.DISABLE for a in plan.actions)} disable and "
            f"{sum(a.stage == Stage.DELETE for a in plan.actions)} delete actions "
            f"({time.monotonic() - t0:.1f} s)"
        )
        _throttle(control, args)

        control.recorder.reset()
        started = time.monotonic()
        summary = apply_plan(spec, plan_id, "disable")
        _report(
            "disable",
            time.monotonic() - started,
            control.recorder.snapshot(),
            users,
            len(accounts),
            args.iam_rate,
            args.cloudtrail_rate,
        )
        assert summary["failed"] == summary["pending"] == 0, summary

        # Delete, killed once in the middle (after a user's DeleteAccessKey went out but
        # before it was recorded), then resumed: nothing may be sent twice.
        victim = _crash_point(plan, accounts, args.users)
        control.recorder.reset()
        started = time.monotonic()
        try:
            apply_plan(spec, plan_id, "delete", fault=(victim.id, AFTER_CALL), clock=lambda: later)
            raise AssertionError("the injected crash did not happen")
        except InjectedCrash:
            crashed_at = time.monotonic() - started
        from state import Store

        with Store.open(state_url) as store:
            run_id = [r.id for r in store.runs.list_runs() if r.kind == "apply"][-1]
        summary = apply_plan(spec, plan_id, "delete", resume_run_id=run_id, clock=lambda: later)
        wall = time.monotonic() - started
        calls = control.recorder.snapshot()
        _report("delete", wall, calls, users, len(accounts), args.iam_rate, args.cloudtrail_rate)
        print(f"  (crashed at {crashed_at:.1f} s after {victim.id}, resumed as run {run_id})")
        assert summary["failed"] == summary["pending"] == 0, summary
        _check_nothing_sent_twice(plan, calls, users, sandbox.url, accounts)

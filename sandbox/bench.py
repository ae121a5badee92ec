"""`make bench`: scale runs of the runbook's steps on the sandbox, reported as figures, not tests.

python -m sandbox.bench inventory --accounts 20 --users 50 --latency-ms 20 --concurrency 1 8
python -m sandbox.bench provision --accounts 50 --permission-sets 10 --assignments 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

BENCH_SPEC = """name = "bench"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = {concurrency}
[aws]
rate_limits = {{ iam = {iam_rate} }}
"""


def _member_iam(url: str, account_id: str) -> Any:
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


def _add_groups_and_policies(url: str, account_id: str, count: int) -> None:
    """Give one account many more groups and policies, attached to its users."""
    iam = _member_iam(url, account_id)
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    document = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}],
        }
    )
    for n in range(count):
        arn = iam.create_policy(PolicyName=f"bench-extra-{n}", PolicyDocument=document)["Policy"][
            "Arn"
        ]
        iam.create_group(GroupName=f"bench-group-{n}")
        iam.attach_group_policy(GroupName=f"bench-group-{n}", PolicyArn=arn)
        for user in users[n % len(users) :: 7]:
            iam.add_user_to_group(GroupName=f"bench-group-{n}", UserName=user)
        iam.attach_user_policy(UserName=users[n % len(users)], PolicyArn=arn)


def _shape(url: str, account_id: str) -> dict[str, int]:
    iam = _member_iam(url, account_id)
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    keys = sum(len(iam.list_access_keys(UserName=u)["AccessKeyMetadata"]) for u in users)
    return {
        "users": len(users),
        "keys": keys,
        "groups": len(iam.list_groups()["Groups"]),
        "local_policies": len(iam.list_policies(Scope="Local")["Policies"]),
    }


def bench_inventory(args: argparse.Namespace) -> None:
    from flows.inventory import run_inventory
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = Path(tempfile.mkdtemp(prefix="iamc-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
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
        seeding = time.monotonic() - started
        print(f"seeded {args.accounts} accounts x {args.users} users in {seeding:.1f} s")
        control = sandbox.middleware
        assert control is not None
        active = [a.account_id for a in manifest.accounts if a.status == "ACTIVE" and a.users]

        def run(concurrency: int, tag: str) -> dict[str, Any]:
            for stale in workdir.glob("state.db*"):
                stale.unlink()
            spec = workdir / f"spec-{tag}.toml"
            spec.write_text(BENCH_SPEC.format(concurrency=concurrency, iam_rate=args.iam_rate))
            control.strictness.update({"latency_ms": args.latency_ms})
            control.recorder.reset()
            t0 = time.monotonic()
            summary = run_inventory(spec)
            wall = time.monotonic() - t0
            control.strictness.update({"latency_ms": 0})
            calls = control.recorder.snapshot()
            print(
                f"[{tag}] concurrency {concurrency}, latency {args.latency_ms} ms: "
                f"{summary['accounts']} accounts, {summary['users']} users, "
                f"{calls['total']} calls, wall {wall:.1f} s"
            )
            return {"wall": wall, "calls": calls}

        results = {c: run(c, f"c{c}") for c in args.concurrency}
        first = results[args.concurrency[-1]]["calls"]["by_account"]
        per_op: Counter[str] = Counter()
        for account in active:
            per_op.update(first.get(account, {}))
        print(f"\nIAM/STS calls per account by operation (mean of {len(active)} accounts):")
        for op, total in sorted(per_op.items()):
            print(f"  {op:45s} {total / len(active):8.1f}")
        totals = [sum(first.get(a, {}).values()) for a in active]
        print(f"  {'total per account':45s} {statistics.mean(totals):8.1f}")

        # Same account, many more groups and policies: the call count must not move.
        probe = active[0]
        before_shape = _shape(sandbox.url, probe)
        before_calls = sum(first.get(probe, {}).values())
        _add_groups_and_policies(sandbox.url, probe, args.extra)
        after_shape = _shape(sandbox.url, probe)
        after = run(args.concurrency[-1], "extra-groups")["calls"]["by_account"].get(probe, {})
        print(f"\naccount {probe}: before {before_shape} -> {before_calls} calls")
        print(f"account {probe}: after  {after_shape} -> {sum(after.values())} calls")
        print("\nper-account calls vs. shape (users, keys -> calls):")
        for account in active[:5]:
            shape = _shape(sandbox.url, account)
            print(f"  {account}: {shape} -> {sum(first.get(account, {}).values())} calls")


def _synthetic_org(accounts: int, users: int) -> tuple[list[Any], list[Any], list[Any]]:
    """An organization shaped like a real one: a few access patterns shared by many people."""
    from iamc.records import (
        AccessKey,
        Account,
        AccountInventory,
        AttachedPolicy,
        IdentityUser,
        InlinePolicy,
        ManagedPolicy,
        MatchStatus,
        User,
        UserClass,
        UserMapping,
    )

    aws = [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    ]
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    now = datetime.now(UTC)
    inventories, mappings, identities = [], [], {}
    for a in range(accounts):
        account_id = f"{100000000000 + a}"
        people = []
        for u in range(users):
            person = (a * 7 + u) % (accounts * users // 3 or 1)
            login = f"person{person:05d}"
            identities.setdefault(login, IdentityUser(f"id-{person:05d}", f"{login}@example.com"))
            pattern = (a + u) % 6
            klass = [UserClass.HUMAN] * 4 + [UserClass.WORKLOAD, UserClass.UNUSED]
            user = User(
                name=login,
                user_id=f"AIDA{a:05d}{u:05d}",
                arn=f"arn:aws:iam::{account_id}:user/{login}",
                created=now - timedelta(days=400),
                password_enabled=pattern < 4,
                access_keys=[AccessKey(f"AKIA{a:06d}{u:06d}XX", "Active")],
                attached_policies=[
                    AttachedPolicy(aws[pattern % 4], aws[pattern % 4].rsplit("/", 1)[-1])
                ],
                inline_policies=[InlinePolicy("extra", document)] if pattern == 3 else [],
                user_class=klass[pattern],
                class_reason="synthetic",
            )
            people.append(user)
            mappings.append(
                UserMapping(
                    account_id,
                    login,
                    MatchStatus.MATCHED,
                    "username",
                    identities[login].user_id,
                    identities[login].user_name,
                )
            )
        inventories.append(
            AccountInventory(
                account=Account(account_id, f"acct-{a}"),
                users=people,
                managed_policies=[
                    ManagedPolicy(arn, arn.rsplit("/", 1)[-1], aws_managed=True, document=document)
                    for arn in aws
                ],
            )
        )
    return inventories, mappings, list(identities.values())


def bench_plan(args: argparse.Namespace) -> None:
    """Plan computation for a synthetic inventory built directly in the store."""
    import resource

    from flows.plan import plan_flow
    from state import Store

    workdir = Path(tempfile.mkdtemp(prefix="iamc-bench-plan-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    spec = workdir / "spec.toml"
    spec.write_text('name = "bench-plan"\nstate = "sqlite:///state.db"\n')
    t0 = time.monotonic()
    inventories, mappings, identities = _synthetic_org(args.accounts, args.users)
    with Store.open(f"sqlite:///{workdir / 'state.db'}") as store:
        migration = store.ensure_migration("bench-plan", {})
        run = store.start_run(migration, "inventory")
        snapshot = store.new_snapshot(migration, run)
        for inventory in inventories:
            store.save_account_inventory(snapshot, inventory)
        store.complete_snapshot(snapshot)
        store.finish_run(run, "succeeded")
        mapping_run = store.start_run(migration, "mapping")
        store.save_mapping(mapping_run, snapshot, identities, [], mappings, [])
        store.finish_run(mapping_run, "succeeded")
    built = time.monotonic() - t0
    print(f"built {args.accounts} accounts x {args.users} users in the store in {built:.1f} s")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.monotonic()
    result = plan_flow(str(spec), str(workdir / "out"))
    wall = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    actions = sum(result["actions"].values())
    print(
        f"plan {result['plan_id']}: {result['users']} users, {result['permission_sets']} "
        f"permission sets, {result['assignments']} assignments, {actions} actions"
    )
    print(f"plan flow wall time {wall:.1f} s (includes Prefect's ephemeral API start)")
    print(f"process max RSS {rss:.0f} MiB (before the flow: {rss_before:.0f} MiB)")
    # The same again, warm: what re-planning costs once Prefect is up.
    t0 = time.monotonic()
    again = plan_flow(str(spec), str(workdir / "out2"))
    warm = time.monotonic() - t0
    print(f"re-plan (warm) {warm:.1f} s; same hash: {again['hash'] == result['hash']}")
    sizes = {k: Path(v).stat().st_size for k, v in result["files"].items()}
    print(f"files: { {k: f'{v / 2**20:.1f} MiB' for k, v in sizes.items()} }")


BENCH_MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    "arn:aws:iam::aws:policy/CloudWatchReadOnlyAccess",
    "arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess",
)
# Per permission set the apply must create it, put its inline policy and attach its one
# AWS-managed policy (tasks/permission_sets.py, CreatePermissionSet._converge).
CALLS_PER_SET = 3


def _bench_org(url: str, accounts: int, users: int) -> tuple[list[str], str, str, dict[str, str]]:
    """An organization of ``accounts`` members and ``users`` identity-store users."""
    org = boto3.client("organizations", endpoint_url=url)
    org.create_organization(FeatureSet="ALL")
    account_ids = []
    for n in range(accounts):
        request = org.create_account(AccountName=f"bench-{n:03d}", Email=f"b{n}@example.com")
        account_ids.append(
            org.describe_create_account_status(
                CreateAccountRequestId=request["CreateAccountStatus"]["Id"]
            )["CreateAccountStatus"]["AccountId"]
        )
    instance = boto3.client("sso-admin", endpoint_url=url).list_instances()["Instances"][0]
    store_id = instance["IdentityStoreId"]
    identitystore = boto3.client("identitystore", endpoint_url=url)
    principals = {}
    for n in range(users):
        name = f"bench-user-{n:02d}@example.com"
        principals[name] = identitystore.create_user(
            IdentityStoreId=store_id,
            UserName=name,
            DisplayName=name,
            Name={"GivenName": "Bench", "FamilyName": f"User{n}"},
        )["UserId"]
    return account_ids, instance["InstanceArn"], store_id, principals


def _bench_provision_plan(
    spec: Path,
    state_url: str,
    accounts: list[str],
    principals: dict[str, str],
    sets: int,
) -> int:
    """Store a plan giving every set to every principal in every account; approve provision."""
    from sandbox.plans import store_provision_plan
    from tasks.synthesis import AssignmentDefinition, PermissionSetDefinition

    definitions = [
        PermissionSetDefinition(
            name=f"Bench{n:02d}",
            description=f"bench permission set {n}",
            fingerprint=f"f-bench-{n}",
            session_duration="PT4H",
            inline_policy={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:ListBucket"],
                        "Resource": f"arn:aws:s3:::bench-bucket-{n}/*",
                    }
                ],
            },
            aws_managed_policy_arns=[BENCH_MANAGED_POLICIES[n % len(BENCH_MANAGED_POLICIES)]],
        )
        for n in range(sets)
    ]
    assignments = [
        AssignmentDefinition(account_id, ps.name, "USER", user_id, name, f"user {name}")
        for account_id in accounts
        for ps in definitions
        for name, user_id in principals.items()
    ]
    plan_id = store_provision_plan(
        spec, state_url, "bench-provision", definitions, assignments, approver="bench"
    )
    return plan_id


def bench_provision(args: argparse.Namespace) -> None:
    """The provision stage at scale through ``apply_flow``, with sso-admin throttled."""
    from flows.apply import apply_flow
    from flows.progress import listening
    from iamc.spec import DEFAULT_RATE_LIMITS
    from sandbox.server import Sandbox
    from tasks.executor import MAX_OUTSTANDING_ASSIGNMENTS, PollPolicy

    workdir = Path(tempfile.mkdtemp(prefix="iamc-bench-provision-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    spec = workdir / "spec.toml"
    # The client-side limits are the spec's defaults: what an operator runs with.
    spec.write_text('name = "bench-provision"\nstate = "sqlite:///state.db"\n')
    state_url = f"sqlite:///{workdir / 'state.db'}"
    n_sets, n_users = args.permission_sets, args.assignments
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=11)
        os.environ.update(sandbox.env())
        control = sandbox.middleware
        assert control is not None
        t0 = time.monotonic()
        accounts, _, _, principals = _bench_org(sandbox.url, args.accounts, n_users)
        plan_id = _bench_provision_plan(spec, state_url, accounts, principals, n_sets)
        n_provisions = len(accounts) * n_sets
        n_assignments = n_provisions * n_users
        print(
            f"set up {len(accounts)} accounts, {n_users} identity-store users, plan {plan_id}: "
            f"{n_sets} permission sets, {n_provisions} provisionings, {n_assignments} "
            f"assignments ({time.monotonic() - t0:.1f} s)"
        )
        control.strictness.update(
            {"throttle": {"sso-admin": args.sso_rate}, "async_in_progress_polls": args.polls}
        )
        print(
            f"sandbox: sso-admin throttled at {args.sso_rate:g} req/s, {args.polls} IN_PROGRESS "
            f"poll(s) per async request; client limits (spec defaults) {DEFAULT_RATE_LIMITS}"
        )
        lock = threading.Lock()
        seen = {"done": 0, "start": 0.0, "last": 0.0}
        total_actions = n_sets + n_provisions + n_assignments

        def progress(event: str, data: dict[str, Any]) -> None:
            with lock:
                now = time.monotonic() - started
                if event == "apply-start":
                    seen["start"] = now
                    print(f"  {now:7.1f} s  apply-start: {data.get('actions')} actions", flush=True)
                elif event == "action-done":
                    seen["done"] += 1
                    seen["last"] = now
                    if seen["done"] % max(1, total_actions // 20) == 0:
                        snap = control.recorder.snapshot()
                        print(
                            f"  {now:7.1f} s  {seen['done']:5d}/{total_actions} actions done, "
                            f"{snap['total']} calls, {snap['throttled_total']} throttled",
                            flush=True,
                        )

        control.recorder.reset()
        started = time.monotonic()
        with listening(progress):
            summary = apply_flow(str(spec), plan_id, "provision")
        wall = time.monotonic() - started
        calls = control.recorder.snapshot()
    stage_wall = seen["last"] - seen["start"]
    print(
        f"\napply_flow: {summary['succeeded']} succeeded, {summary['adopted']} adopted, "
        f"{summary['failed']} failed, {summary['pending']} pending of {summary['actions']}"
    )
    print(f"wall time: {wall:.1f} s for apply_flow (Prefect start, checks, work, verification)")
    print(f"           {stage_wall:.1f} s from apply-start to the last action done")

    def table(title: str, counts: dict[str, int]) -> None:
        print(f"\n{title}:")
        for key, count in sorted(counts.items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])):
            print(f"  {key:58s} {count:7d}")

    table("calls by operation (admitted)", calls["calls"])
    sso_calls = sum(v for k, v in calls["calls"].items() if k.startswith("sso-admin:"))
    print(f"  {'sso-admin total':58s} {sso_calls:7d}")
    print(f"  {'other total':58s} {calls['total'] - sso_calls:7d}")
    print(f"  {'total':58s} {calls['total']:7d}")
    table("throttled attempts (answered ThrottlingException)", calls["throttled"])
    print(f"  {'total':58s} {calls['throttled_total']:7d}")
    if calls["errors"]:
        table("errors", calls["errors"])

    # (a) The rate bound: sso-admin requests the stage can't do without, at the limit.
    rate = args.sso_rate
    creates = n_sets * CALLS_PER_SET
    minimum_one_poll = creates + 2 * n_provisions + 2 * n_assignments
    describes = args.polls + 1  # IN_PROGRESS `polls` times, then SUCCEEDED
    minimum_sandbox = creates + (1 + describes) * (n_provisions + n_assignments)
    print("\nlower bounds")
    print(
        f"(a) rate, {rate:g} sso-admin requests/s:\n"
        f"    minimum calls, one status poll each = {n_sets} sets x {CALLS_PER_SET} "
        f"(Create, PutInline, AttachManaged) + {n_provisions} x (Provision + 1 Describe) + "
        f"{n_assignments} x (CreateAssignment + 1 Describe) = {minimum_one_poll} calls "
        f"-> {minimum_one_poll / rate:.1f} s\n"
        f"    minimum calls in this sandbox ({describes} Describes each: {args.polls} "
        f"IN_PROGRESS + SUCCEEDED) = {creates} + {n_provisions + n_assignments} x "
        f"{1 + describes} = {minimum_sandbox} calls -> {minimum_sandbox / rate:.1f} s\n"
        f"    sso-admin calls actually admitted = {sso_calls} -> {sso_calls / rate:.1f} s"
    )
    # (b) The concurrency bound: creations in flight at once x how long each must stay there.
    poll = PollPolicy()
    waits = [min(poll.maximum, poll.initial * 2**k) for k in range(args.polls)]
    one_creation = sum(waits)
    naive = args.polls * poll.initial
    waves = n_assignments / MAX_OUTSTANDING_ASSIGNMENTS
    concurrency_bound = waves * one_creation
    print(
        f"(b) concurrency, {MAX_OUTSTANDING_ASSIGNMENTS} outstanding creations: "
        f"{n_assignments} / {MAX_OUTSTANDING_ASSIGNMENTS} = {waves:g} waves x "
        f"{one_creation:.2f} s = {concurrency_bound:.1f} s\n"
        f"    one creation reports SUCCEEDED no sooner than the executor's tenacity waits "
        f"before polls 2..{describes}: {' + '.join(f'{w:g}' for w in waits)} s "
        f"(wait_exponential(multiplier={poll.initial:g}, max={poll.maximum:g}));\n"
        f"    counted as polls x minimum interval ({args.polls} x {poll.initial:g} s) it would "
        f"be {waves * naive:.1f} s"
    )
    bounds = {
        "rate (minimum calls, sandbox polls)": minimum_sandbox / rate,
        "concurrency": concurrency_bound,
    }
    binding = max(bounds, key=bounds.__getitem__)
    bound = bounds[binding]
    print(f"binding: {binding} = {bound:.1f} s")
    print(
        f"wall / bound = {wall:.1f} / {bound:.1f} = {wall / bound:.2f} (apply_flow); "
        f"{stage_wall / bound:.2f} (apply-start to last action)"
    )
    print(
        f"rate bound from calls actually made: {sso_calls / rate:.1f} s; "
        f"wall / that = {wall / (sso_calls / rate):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    inventory = sub.add_parser("inventory", help="inventory of a seeded organization")
    inventory.add_argument("--accounts", type=int, default=20)
    inventory.add_argument("--users", type=int, default=50)
    inventory.add_argument("--seed", type=int, default=7)
    inventory.add_argument("--latency-ms", type=int, default=20)
    inventory.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    inventory.add_argument(
        "--iam-rate", type=float, default=100.0, help="client limit, calls/s per account"
    )
    inventory.add_argument(
        "--extra", type=int, default=30, help="groups+policies added to one account"
    )
    plan = sub.add_parser("plan", help="plan computation for a synthetic inventory in the store")
    plan.add_argument("--accounts", type=int, default=500)
    plan.add_argument("--users", type=int, default=20)
    provision = sub.add_parser(
        "provision", help="the provision stage through apply_flow, sso-admin throttled"
    )
    provision.add_argument("--accounts", type=int, default=50)
    provision.add_argument("--permission-sets", type=int, default=10)
    provision.add_argument(
        "--assignments", type=int, default=5, help="users assigned each set in every account"
    )
    provision.add_argument("--sso-rate", type=float, default=20.0, help="sandbox sso-admin req/s")
    provision.add_argument("--polls", type=int, default=2, help="IN_PROGRESS polls per request")
    args = parser.parse_args()
    if args.bench == "inventory":
        bench_inventory(args)
    elif args.bench == "plan":
        bench_plan(args)
    elif args.bench == "provision":
        bench_provision(args)


if __name__ == "__main__":
    main()

"""A randomized soak of the stages that take access away: disable, rollback of one user, delete,
and restore.

Two operators act in any order — one runs the stages, resumes and rolls back, sometimes at the
same moment as the other; the other changes the world between and during runs (protects a user,
replaces one with a namesake, removes a person's new access, names a user in a bucket policy,
turns a key back on) — and processes die at random step boundaries. At the moment of every
quarantine and every deletion the soak checks, against live AWS and the journal, that the user
was the planned unique id, unprotected, and (quarantine) still had the access the plan gave
them, or (deletion) disabled by this plan and not brought back, with no active key and no
bucket policy naming it; after every restore that went through, that the user is as its newest
snapshot says, as far as AWS allows (path, tags, inline policies but the quarantine, managed
policies, groups). The seed is printed; IAMC_SOAK_SEED replays a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.errors import ApplyFailed, ApplyRefused
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.reports import load_plan
from engine.rollback import rollback_plan
from engine.runs import view_runs
from flows.restore import restore
from state import Store
from state.journal import DONE_STATUSES, ROLLBACK_PREFIX
from tasks.user_disable import HANDLERS
from tasks.user_teardown import TeardownStep

STEPS = 18
BUDGET_SECONDS = 50
LATER = datetime.now(UTC) + timedelta(days=15)
IDENTITIES = ("alice@example.com", "bob@example.com")


def later() -> datetime:
    return LATER


class Watch:
    """The checks made at the moment of each mutation, from outside iamc."""

    def __init__(self, world, spec: Path, plan_id: int, url: str, planned: dict):
        self.world, self.spec, self.plan_id, self.url = world, spec, plan_id, url
        self.planned = planned  # (account, user) -> (unique id, identity)
        self.violations: list[str] = []
        self.checks = 0
        self.deleted: set[tuple[str, str]] = set()
        self.quarantined: set[tuple[str, str]] = set()
        self.replaced: set[tuple[str, str]] = set()
        self.referenced: dict[tuple[str, str], str] = {}  # user -> bucket naming it
        self.restored: set[tuple[str, str]] = set()
        self.deletions = 0
        self._lock = threading.Lock()

    def _check(self, ok: bool, what: str) -> None:
        with self._lock:
            self.checks += 1
            if not ok:
                self.violations.append(what)

    def _live(self, account_id: str, user: str) -> dict | None:
        iam = self.world.member_iam(account_id)
        try:
            found = iam.get_user(UserName=user)["User"]
        except iam.exceptions.NoSuchEntityException:
            return None
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=user)["Tags"]}
        return {"id": found["UserId"], "tags": tags}

    def _same_and_unprotected(self, when: str, account_id: str, user: str) -> None:
        live = self._live(account_id, user)
        planned_id = self.planned[(account_id, user)][0]
        self._check(
            live is not None and live["id"] == planned_id,
            f"{when} {account_id}/{user}: not the planned unique id",
        )
        if live is not None:
            self._check(
                live["tags"].get("iamc:protected", "").lower() != "true",
                f"{when} {account_id}/{user}: protected",
            )

    def at_quarantine(self, account_id: str, user: str) -> None:
        self._same_and_unprotected("quarantined", account_id, user)
        identity = self.planned[(account_id, user)][1]
        self._check(
            _assigned(self.world, account_id, identity),
            f"quarantined {account_id}/{user}: {identity} had no Readers assignment (locked out)",
        )
        with self._lock:
            self.quarantined.add((account_id, user))

    def at_deletion(self, account_id: str, user: str) -> None:
        self._same_and_unprotected("deleted", account_id, user)
        iam = self.world.member_iam(account_id)
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        self._check(
            all(k["Status"] != "Active" for k in keys), f"deleted {account_id}/{user}: active key"
        )
        with Store.open(self.url) as store:
            quarantine = f"disable:{account_id}:{user}:attach-quarantine-policy"
            entry = store.journal.journal_entry(self.plan_id, quarantine)
            undo = store.journal.journal_entry(self.plan_id, ROLLBACK_PREFIX + quarantine)
        self._check(
            entry is not None and entry.status in DONE_STATUSES and undo is None,
            f"deleted {account_id}/{user}: not disabled by this plan, or brought back",
        )
        self._check(
            entry is None or entry.finished is None or LATER - entry.finished >= timedelta(14),
            f"deleted {account_id}/{user}: disabled less than bake_days before",
        )
        bucket = self.referenced.get((account_id, user))
        self._check(bucket is None, f"deleted {account_id}/{user}: named in bucket {bucket}")
        with self._lock:
            self.deleted.add((account_id, user))
            self.deletions += 1

    def after_restore(self, account_id: str, user: str) -> None:
        """The restored user is what its newest snapshot says, where AWS allows it back."""
        with Store.open(self.url) as store:
            migration_id = store.migrations.find_migration("wave-1")
            snapshot = store.retired.user_snapshots(
                migration_id, account_id=account_id, user_name=user
            )[-1].content
        iam = self.world.member_iam(account_id)
        live = iam.get_user(UserName=user)["User"]
        inline = set(iam.list_user_policies(UserName=user)["PolicyNames"])
        attached = {
            p["PolicyArn"]
            for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
        }
        groups = {g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]}
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=user)["Tags"]}
        want_inline = set(snapshot["inline_policies"]) - {"iamc-quarantine"}
        want_attached = set(snapshot["attached_policies"])
        for what, got, want in (
            ("path", live["Path"], snapshot["path"]),
            ("tags", tags, snapshot["tags"]),
            ("inline policies", inline - {"iamc-quarantine"}, want_inline),
            ("managed policies", attached, want_attached),
            ("groups", groups, set(snapshot["groups"])),
        ):
            self._check(got == want, f"restored {account_id}/{user}: {what} {got} != {want}")
        with self._lock:
            self.restored.add((account_id, user))


def _sso(world):
    sso = world.client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    for arn in sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]:
        described = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        if described["PermissionSet"]["Name"] == "Readers":
            return sso, instance, arn
    return sso, instance, None


def _assigned(world, account_id: str, identity: str) -> bool:
    sso, instance, readers = _sso(world)
    if readers is None:
        return False
    found = sso.list_account_assignments(
        InstanceArn=instance, AccountId=account_id, PermissionSetArn=readers
    )["AccountAssignments"]
    return any(a["PrincipalId"] == world.users[identity] for a in found)


def _hook(monkeypatch, watch: Watch) -> None:
    quarantine = HANDLERS["attach-quarantine-policy"]
    real_apply = quarantine.apply

    class Watched:
        PERMISSIONS = quarantine.PERMISSIONS
        probe = quarantine.probe
        undo = quarantine.undo

        def apply(self, ctx, action, live, progress, prior):
            if not live.exists:
                watch.at_quarantine(action.account_id, action.params["user"])
            return real_apply(ctx, action, live, progress, prior)

    monkeypatch.setitem(HANDLERS, "attach-quarantine-policy", Watched())
    real_delete = TeardownStep._delete_user

    def watched_delete(iam, user, progress):
        account_id = iam.get_user(UserName=user)["User"]["Arn"].split(":")[4]
        watch.at_deletion(account_id, user)
        return real_delete(iam, user, progress)

    monkeypatch.setattr(TeardownStep, "_delete_user", staticmethod(watched_delete))


# -- the second operator's changes to the world ------------------------------------------------


def world_change(rng: random.Random, world, watch: Watch) -> str:
    account_id, user = rng.choice(sorted(watch.planned))
    iam = world.member_iam(account_id)
    live = watch._live(account_id, user)
    change = rng.choice(["protect", "unprotect", "namesake", "unassign", "reference", "key-on"])
    if live is None:
        return f"{change} {user}: gone"
    if change == "protect":
        iam.tag_user(UserName=user, Tags=[{"Key": "iamc:protected", "Value": "true"}])
    elif change == "unprotect":
        iam.untag_user(UserName=user, TagKeys=["iamc:protected"])
    elif change == "namesake":
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        for policy in iam.list_user_policies(UserName=user)["PolicyNames"]:
            iam.delete_user_policy(UserName=user, PolicyName=policy)
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            iam.delete_login_profile(UserName=user)
        iam.delete_user(UserName=user)
        iam.create_user(UserName=user, Path="/people/")
        iam.create_login_profile(UserName=user, Password="Namesake-Passw0rd!x")
        watch.replaced.add((account_id, user))
    elif change == "unassign":
        sso, instance, readers = _sso(world)
        identity = watch.planned[(account_id, user)][1]
        if readers is not None and _assigned(world, account_id, identity):
            sso.delete_account_assignment(
                InstanceArn=instance,
                TargetId=account_id,
                TargetType="AWS_ACCOUNT",
                PermissionSetArn=readers,
                PrincipalType="USER",
                PrincipalId=world.users[identity],
            )
    elif change == "reference":
        s3 = world.member_client(account_id, "s3")
        bucket = f"soak-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        arn = f"arn:aws:iam::{account_id}:user/people/{user}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": arn},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        watch.referenced[(account_id, user)] = bucket
    else:
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Active")
    return f"{change} {account_id}/{user}"


# -- the first operator's runs ------------------------------------------------------------------


def _operation(rng: random.Random, spec: Path, plan_id: int, url: str, forward: dict, kit, watch):
    """One operator action, as a (description, callable) pair."""
    with Store.open(url) as store:
        runs = [r for r in store.runs.list_runs() if r.kind in ("apply", "rollback")]
        views = view_runs(runs, store.leases.list_stage_locks())
    disables = [r for r in runs if r.kind == "apply" and r.params.get("stage") == "disable"]
    open_runs = [r for r in runs if views[r.id].status in ("failed", "interrupted")]
    choices = ["disable", "delete"] + (["resume"] * 2 if open_runs else [])
    choices += ["rollback-user"] if disables else []
    choices += ["restore"] if watch.deleted else []
    op = rng.choice(choices)
    fault = None
    if op in ("disable", "delete") and rng.random() < 0.5:
        fault = (rng.choice(forward[op]), rng.choice([AFTER_INTENT, AFTER_CALL]))
    if op == "disable":
        return f"disable {fault}", lambda: apply_plan(spec, plan_id, "disable", fault=fault)
    if op == "delete":
        return f"delete {fault}", lambda: apply_plan(
            spec, plan_id, "delete", fault=fault, clock=later
        )
    if op == "rollback-user":
        run = rng.choice(disables)
        account_id, user = rng.choice(sorted({(a, u) for a, u in forward["users"]}))
        return f"rollback {run.id} {user}", lambda: rollback_plan(
            spec, run.id, user=f"{account_id}/{user}", poll=kit.QUICK
        )
    if op == "restore":
        account_id, user = rng.choice(sorted(watch.deleted))

        def restore_and_check() -> None:
            restore(spec, user=f"{account_id}/{user}")
            watch.after_restore(account_id, user)
            watch.deleted.discard((account_id, user))

        return f"restore {user}", restore_and_check
    run = rng.choice(open_runs)
    if run.kind == "apply":
        return f"resume {run.id} ({run.params['stage']})", lambda: apply_plan(
            spec, plan_id, run.params["stage"], resume_run_id=run.id, clock=later
        )
    return f"resume rollback {run.id}", lambda: rollback_plan(
        spec, int(run.params["of_run"]), resume_run_id=run.id, user=run.params.get("user")
    )


def _attempt(call) -> str:
    try:
        call()
        return "ok"
    except InjectedCrash:
        return "crashed"
    except ApplyRefused as err:
        return f"refused: {str(err)[:60]}"
    except ApplyFailed:
        return "failed"


def test_random_operators_and_crashes_never_remove_the_wrong_person(
    clean, retire_kit, tmp_path: Path, monkeypatch
):
    seed = int(os.environ.get("IAMC_SOAK_SEED") or random.SystemRandom().randrange(10**6))
    print(f"retire soak seed {seed} (IAMC_SOAK_SEED={seed} replays it)")
    rng = random.Random(seed)
    kit, prefix = retire_kit, f"s{uuid.uuid4().hex[:5]}-"
    a1, a2 = clean.accounts
    people = [((a1, a2)[i % 2], f"{prefix}u{i}", IDENTITIES[(i // 2) % 2]) for i in range(6)]
    for account_id, user, _ in people:
        kit.seed_user(clean, account_id, user, keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(clean, tmp_path, people)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    apply_plan(spec, plan_id, "provision", poll=kit.QUICK)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    forward = {
        stage: [a.id for a in plan.actions if a.stage == stage] for stage in ("disable", "delete")
    }
    forward["users"] = [(a, u) for a, u, _ in people]
    planned = {
        (a, u): (clean.member_iam(a).get_user(UserName=u)["User"]["UserId"], i)
        for a, u, i in people
    }
    watch = Watch(clean, spec, plan_id, url, planned)
    _hook(monkeypatch, watch)

    started, history = time.monotonic(), []
    for step in range(STEPS):
        if time.monotonic() - started > BUDGET_SECONDS:
            break
        roll = rng.random()
        if step == 0:
            # Everyone disabled as planned first, so every sequence has changes to check.
            disabled = _attempt(lambda: apply_plan(spec, plan_id, "disable"))
            history.append((step, "disable", disabled))
        elif roll < 0.25:
            history.append((step, world_change(rng, clean, watch)))
        elif roll < 0.4:
            # Both operators at the same moment: the stages' shared leases let one act.
            ops = [_operation(rng, spec, plan_id, url, forward, kit, watch) for _ in range(2)]
            results: list[str] = []

            def attempt(call, results=results) -> None:
                results.append(_attempt(call))

            threads = [threading.Thread(target=attempt, args=(call,)) for _, call in ops]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            history.append((step, [d for d, _ in ops], results))
        else:
            what, call = _operation(rng, spec, plan_id, url, forward, kit, watch)
            history.append((step, what, _attempt(call)))
        context = f"seed {seed}, steps {history}"
        assert watch.violations == [], f"{context}: {watch.violations}"
        for account_id, user in planned:
            live = watch._live(account_id, user)
            gone = live is None or live["id"] != planned[(account_id, user)][0]
            accounted = watch.deleted | watch.replaced | watch.restored
            vanished = gone and (account_id, user) not in accounted
            assert not vanished, f"{context}: {account_id}/{user} vanished"

    print(
        f"retire soak: {len(history)} sequences, {watch.checks} checks at the moment of a change, "
        f"{len(watch.quarantined)} quarantined, {watch.deletions} deleted, "
        f"{len(watch.replaced)} replaced by a namesake, {len(watch.restored)} restored"
    )
    assert watch.quarantined, f"seed {seed}: the first disable changed nobody: {history}"

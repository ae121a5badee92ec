"""The delete stage: preconditions per user, a snapshot first, AWS's order, DeleteConflict."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from domain.errors import ApplyFailed, ApplyRefused
from domain.retire import Decision
from engine.apply import apply_plan
from engine.rollback import rollback_plan
from state import Store

LATER = datetime.now(UTC) + timedelta(days=15)


def later() -> datetime:
    return LATER


def _prefix() -> str:
    return f"x{uuid.uuid4().hex[:6]}-"


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'state.db'}")


def _runs(tmp_path: Path, kind: str = "apply") -> list[int]:
    with _store(tmp_path) as store:
        return [r.id for r in store.runs.list_runs() if r.kind == kind]


def resume_delete(spec: Path, plan_id: int, tmp_path: Path) -> dict:
    """Resume the latest delete run with the clock past the bake period."""
    return apply_plan(spec, plan_id, "delete", resume_run_id=_runs(tmp_path)[-1], clock=later)


def _seed(world, kit, prefix: str) -> tuple[str, str, dict]:
    a1, a2 = world.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    made = kit.seed_user(
        world,
        a1,
        jane,
        keys=1,
        inactive_keys=1,
        ssh=True,
        cert=True,
        service_credential=True,
        password=True,
        mfa=True,
        inline=True,
        managed=True,
        group=f"{prefix}devs",
        tags={"team": "payments"},
    )
    bob_made = kit.seed_user(world, a2, bob, keys=1)
    return jane, bob, {"jane": made, "bob": bob_made}


def test_a_user_is_deleted_only_after_its_bake_period_with_a_snapshot_first(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    jane, bob, made = _seed(clean, kit, prefix)
    a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete")  # now: still baking
    assert f"refused {a1}/{jane}: baking: bake period: 14 days from" in str(err.value)
    assert set(kit.iam_state(clean, prefix)) == {f"{a1}/{jane}", f"{a2}/{bob}"}

    summary = apply_plan(spec, plan_id, "delete", resume_run_id=_runs(tmp_path)[-1], clock=later)

    assert summary["failed"] == summary["pending"] == 0, summary
    assert kit.iam_state(clean, prefix) == {}
    with _store(tmp_path) as store:
        migration_id = store.migrations.find_migration("wave-1")
        snapshots = {s.user_name: s for s in store.retired.user_snapshots(migration_id)}
    snap = snapshots[jane].content
    assert snap["path"] == "/people/" and snap["tags"] == {"team": "payments"}
    assert snap["console_password"]["existed"] is True
    assert sorted(k["status"] for k in snap["access_keys"]) == ["Inactive", "Inactive"]
    assert {k["access_key_id"] for k in snap["access_keys"]} == {
        made["jane"]["keys"][0]["AccessKeyId"],
        made["jane"]["inactive_keys"][0]["AccessKeyId"],
    }
    assert snap["ssh_public_keys"][0]["body"].startswith("ssh-ed25519 ")
    assert "BEGIN CERTIFICATE" in snap["signing_certificates"][0]["body"]
    assert snap["mfa_devices"][0]["serial"] == made["jane"]["mfa"]
    assert snap["groups"] == [f"{prefix}devs"]
    assert set(snap["inline_policies"]) == {"own", "iamc-quarantine"}
    assert len(snap["attached_policies"]) == 1
    assert snap["service_specific_credentials"][0]["service_name"] == "codecommit.amazonaws.com"
    # Never a secret: not the secret access key, not the password.
    text = json.dumps(snap)
    assert made["jane"]["keys"][0]["SecretAccessKey"] not in text
    assert "Sandbox-Passw0rd" not in text
    # The virtual MFA device went with its user (it would otherwise outlive it).
    mfa = clean.member_iam(a1).list_virtual_mfa_devices()["VirtualMFADevices"]
    assert made["jane"]["mfa"] not in {d["SerialNumber"] for d in mfa}


def test_a_resource_policy_naming_the_user_blocks_it_with_the_arn_and_statement(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    _jane, bob, _ = _seed(clean, kit, prefix)
    _a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    creds = clean.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{a2}:role/OrganizationAccountAccessRole", RoleSessionName="test"
    )["Credentials"]
    s3 = boto3.client(
        "s3",
        endpoint_url=clean.sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    bucket = f"{prefix}reports"
    s3.create_bucket(Bucket=bucket)
    statement = {
        "Sid": "BobReads",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{a2}:user/people/{bob}"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=later)

    message = str(err.value)
    assert f"refused {a2}/{bob}: named in s3 bucket arn:aws:s3:::{bucket} (statement BobReads)" in (
        message
    )
    assert '"Sid": "BobReads"' in message
    remaining = kit.iam_state(clean, prefix)
    assert list(remaining) == [f"{a2}/{bob}"]  # jane went; bob waits


def test_delete_conflict_rereads_the_user_and_finishes_what_is_left(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    _jane, bob, _ = _seed(clean, kit, prefix)
    _a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    # Since the plan, bob got an (inactive) SSH key: the plan has no step for it.
    iam = clean.member_iam(a2)
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
    key_id = iam.upload_ssh_public_key(UserName=bob, SSHPublicKeyBody=f"ssh-ed25519 {blob} b@h")[
        "SSHPublicKey"
    ]["SSHPublicKeyId"]
    iam.update_ssh_public_key(UserName=bob, SSHPublicKeyId=key_id, Status="Inactive")

    summary = apply_plan(spec, plan_id, "delete", clock=later)

    assert summary["failed"] == 0 and kit.iam_state(clean, prefix) == {}
    errors = clean.control.calls()["errors"]
    assert errors.get("iam:DeleteUser:409") == 1  # one DeleteConflict, then finished
    with _store(tmp_path) as store:
        entry = store.journal.journal_entry(plan_id, f"delete:{a2}:{bob}:11-delete-user")
        snapshot = store.retired.user_snapshots(
            store.migrations.find_migration("wave-1"), user_name=bob
        )[0]
    assert entry is not None and entry.outcome is not None
    assert f"left over: delete-ssh-public-key {key_id}" in entry.outcome["removed"]
    assert snapshot.content["ssh_public_keys"][0]["ssh_public_key_id"] == key_id


def test_a_delete_run_cannot_be_rolled_back(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    _seed(clean, kit, prefix)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    apply_plan(spec, plan_id, "delete", clock=later)
    with pytest.raises(ApplyRefused, match=r"can't be undone.*iamc restore"):
        rollback_plan(spec, _runs(tmp_path)[-1])


def test_use_since_disabling_blocks_deletion_until_a_decision(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    _jane, bob, made = _seed(clean, kit, prefix)
    _a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    # A forgotten cron job still signs with bob's (now inactive) key.
    key = made["bob"]["keys"][0]
    stale = boto3.client(
        "iam",
        endpoint_url=clean.sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(user_agent="nightly-backup/1.0", retries={"max_attempts": 1}),
    )
    with pytest.raises(Exception, match="InvalidClientTokenId"):
        stale.list_users()

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=later)
    message = str(err.value)
    assert f"refused {a2}/{bob}: in-use: 1 attempt(s) to use it since it was disabled" in message
    assert "ListUsers (InvalidClientTokenId)" in message and "nightly-backup/1.0" in message
    assert list(kit.iam_state(clean, prefix)) == [f"{a2}/{bob}"]

    with _store(tmp_path) as store:
        store.retired.record_bake_decision(
            store.migrations.find_migration("wave-1"),
            a2,
            bob,
            Decision.DELETE,
            "ops",
            "the backup job was moved to a role",
        )
    summary = resume_delete(spec, plan_id, tmp_path)
    assert summary["failed"] == 0 and kit.iam_state(clean, prefix) == {}


# -- references anywhere in the organization (issue 21, part 4) -------------------------------


def _policy(sid: str, principal: str, action: str, resource: str = "*") -> str:
    statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": action,
        "Resource": resource,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _kms_key_policy_in_another_region(world, prefix: str, jane_arn: str) -> str:
    a1, _a2 = world.accounts
    kms = world.member_client(a1, "kms", "eu-west-1")
    key = kms.create_key(Policy=_policy("JaneDecrypts", jane_arn, "kms:Decrypt"))["KeyMetadata"]
    return f"kms key {key['Arn']} (statement JaneDecrypts) in account {a1} (eu-west-1)"


def _ecr_repository_policy(world, prefix: str, jane_arn: str) -> str:
    a1, _a2 = world.accounts
    ecr = world.member_client(a1, "ecr", "us-west-2")
    repository = ecr.create_repository(repositoryName=f"{prefix}app")["repository"]
    ecr.set_repository_policy(
        repositoryName=repository["repositoryName"],
        policyText=_policy("JanePulls", jane_arn, "ecr:BatchGetImage"),
    )
    arn = repository["repositoryArn"]
    return f"ecr repository {arn} (statement JanePulls) in account {a1} (us-west-2)"


def _s3_bucket_policy_in_another_member_account(world, prefix: str, jane_arn: str) -> str:
    _a1, a2 = world.accounts
    s3 = world.member_client(a2, "s3", "eu-west-1")
    bucket = f"{prefix}reports"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_policy("JaneReads", jane_arn, "s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
    )
    return f"s3 bucket arn:aws:s3:::{bucket} (statement JaneReads) in account {a2} (eu-west-1)"


def _kms_grant(world, prefix: str, jane_arn: str) -> str:
    _a1, a2 = world.accounts
    kms = world.member_client(a2, "kms", "us-east-2")
    key = kms.create_key()["KeyMetadata"]
    grant = kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=jane_arn, Operations=["Decrypt"])
    return f"kms grant {key['Arn']} (grant {grant['GrantId']}) in account {a2} (us-east-2)"


@pytest.mark.parametrize(
    "name_jane",
    [
        _kms_key_policy_in_another_region,
        _ecr_repository_policy,
        _s3_bucket_policy_in_another_member_account,
        _kms_grant,
    ],
)
def test_a_reference_anywhere_in_the_organization_refuses_the_users_deletion(
    clean, retire_kit, tmp_path: Path, name_jane
):
    kit, prefix = retire_kit, _prefix()
    a1, _a2 = clean.accounts
    jane = f"{prefix}jane"
    kit.seed_user(clean, a1, jane, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    where = name_jane(clean, prefix, f"arn:aws:iam::{a1}:user/people/{jane}")

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=later)

    message = str(err.value)
    assert f"refused {a1}/{jane}: named in {where}: " in message
    assert "remove the grant first" in message
    assert list(kit.iam_state(clean, prefix)) == [f"{a1}/{jane}"]


def test_a_policy_that_cannot_be_read_blocks_deletion_naming_it(
    clean, retire_kit, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    jane = f"{prefix}jane"
    kit.seed_user(clean, a1, jane, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    ecr = clean.member_client(a2, "ecr", "eu-central-1")
    arn = ecr.create_repository(repositoryName=f"{prefix}locked")["repository"]["repositoryArn"]
    clean.control.configure(deny=["ecr:GetRepositoryPolicy"])
    try:
        with (
            caplog.at_level("INFO", logger="tasks.resource_policies"),
            pytest.raises(ApplyFailed) as err,
        ):
            apply_plan(spec, plan_id, "delete", clock=later)
    finally:
        clean.control.configure(deny=[])

    message = str(err.value)
    assert f"refused {a1}/{jane}: resource policies that could not be read" in message
    assert f"ecr repository {arn} (account {a2} eu-central-1): AccessDeniedException" in message
    assert list(kit.iam_state(clean, prefix)) == [f"{a1}/{jane}"]
    # Read once for the run: every in-scope account, every enabled region.
    reads = [r.getMessage() for r in caplog.records if "resource policies of" in r.getMessage()]
    assert len(reads) == 1 and reads[0].startswith("resource policies of 2 accounts read in")

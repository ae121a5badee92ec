"""Seeding: deterministic for a seed, and the manifest matches what the APIs report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox.seed import seed_organization
from sandbox.seed_manifest import SeedManifest, expected_class
from sandbox.seed_samples import FALSE_POSITIVE_KEY_ID
from sandbox.server import Sandbox


def _seed(sandbox: Sandbox, session: boto3.Session, seed: int, **kwargs) -> SeedManifest:
    sandbox.reset(seed=seed)  # a fresh AWS and a freshly seeded random source
    return seed_organization(session, seed=seed, endpoint_url=sandbox.url, **kwargs)


def _shape(manifest: SeedManifest) -> list[tuple]:
    return [
        (
            a.account_id,
            a.name,
            a.ou,
            a.status,
            [(u.name, u.kind, u.expected_class) for u in a.users],
        )
        for a in manifest.accounts
    ]


@pytest.fixture(scope="module")
def seeded(sandbox: Sandbox, tmp_path_factory) -> tuple[SeedManifest, SeedManifest, Path]:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    first = _seed(sandbox, session, 11, accounts=2, users_per_account=12)
    samples = tmp_path_factory.mktemp("samples")
    second = _seed(sandbox, session, 11, accounts=2, users_per_account=12, samples_dir=samples)
    return first, second, samples


def test_seeding_is_deterministic_for_a_seed(seeded) -> None:
    first, second, _ = seeded
    assert _shape(first) == _shape(second)
    assert first.identity_store_id == second.identity_store_id
    assert first.instance_arn == second.instance_arn
    assert first.sample_key_id == second.sample_key_id


def test_seed_makes_every_kind_and_the_special_people(seeded) -> None:
    manifest = seeded[1]
    active = [a for a in manifest.accounts if a.status == "ACTIVE"]
    assert len(active) == 2
    assert [a.status for a in manifest.accounts].count("SUSPENDED") == 1
    first_kinds = {u.kind for u in active[0].users}
    assert len(first_kinds) == 12
    names = {u.name for u in active[0].users}
    assert {"breakglass-admin", "alex.kim", "victor.stone"} <= names
    assert manifest.unmatched_humans == ["victor.stone"]
    identity_names = {u["user_name"] for u in manifest.identity_users}
    assert "victor.stone@example.com" not in identity_names
    assert set(manifest.ambiguous_humans["alex.kim"]) <= identity_names
    assert manifest.counts_by_class() == {"human": 6, "protected": 4, "unused": 4, "workload": 10}
    # the same person holds IAM users in several accounts
    humans = [{u.email for u in a.users if u.email} for a in active]
    assert humans[0] & humans[1] or len(humans[0] | humans[1]) < sum(map(len, humans))


def test_organization_matches_manifest(seeded, client) -> None:
    manifest = seeded[1]
    org = client("organizations")
    listed = {a["Id"]: a["Status"] for a in org.list_accounts()["Accounts"]}
    for account in manifest.accounts:
        assert listed[account.account_id] == account.status
    assert client("sso-admin").list_instances()["Instances"][0]["InstanceArn"] == (
        manifest.instance_arn
    )
    users = client("identitystore").list_users(IdentityStoreId=manifest.identity_store_id)
    assert len(users["Users"]) == len(manifest.identity_users)


def _member_iam(client, account_id: str):
    creds = client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="test",
    )["Credentials"]
    member = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return client("iam", target=member)


def test_manifest_classes_match_what_iam_reports(seeded, client) -> None:
    """Recompute each user's class from the IAM API alone: the backdating took effect."""
    manifest = seeded[1]
    now = datetime.now(UTC)
    for account in (a for a in manifest.accounts if a.status == "ACTIVE"):
        iam = _member_iam(client, account.account_id)
        listed = {u["UserName"]: u for u in iam.list_users()["Users"]}
        assert set(listed) == {u.name for u in account.users}
        for seeded_user in account.users:
            user = listed[seeded_user.name]
            tags = {
                t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=user["UserName"])["Tags"]
            }
            try:
                iam.get_login_profile(UserName=user["UserName"])
                has_password = True
            except ClientError:
                has_password = False
            keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
            used = [
                iam.get_access_key_last_used(AccessKeyId=k["AccessKeyId"])["AccessKeyLastUsed"].get(
                    "LastUsedDate"
                )
                for k in keys
            ]
            other = bool(
                keys
                or iam.list_ssh_public_keys(UserName=user["UserName"])["SSHPublicKeys"]
                or iam.list_signing_certificates(UserName=user["UserName"])["Certificates"]
            )
            mfa = bool(iam.list_mfa_devices(UserName=user["UserName"])["MFADevices"])
            activity = [d for d in [user.get("PasswordLastUsed"), *used] if d]
            got = expected_class(
                user["UserName"],
                tags,
                has_password=has_password,
                has_mfa=mfa,
                has_other_credentials=other,
                last_activity=max(activity) if activity else None,
                created=user["CreateDate"],
                now=now,
            )
            assert got == seeded_user.expected_class, seeded_user


def test_samples_hold_the_planted_key(seeded) -> None:
    manifest, samples = seeded[1], seeded[2]
    assert manifest.sample_key_id and manifest.sample_key_id.startswith("AKIA")
    texts = {p.name: p.read_text() for p in samples.iterdir() if p.is_file()}
    for name in ("upload_reports.py", ".env", "main.tf"):
        assert manifest.sample_key_id in texts[name]
    assert FALSE_POSITIVE_KEY_ID in texts["upload_reports.py"]
    assert '"sample_key_id"' in texts["seed-manifest.json"]


def _workload_key_ids(client, manifest: SeedManifest) -> dict[str, tuple[str, str]]:
    found = {}
    for account in (a for a in manifest.accounts if a.status == "ACTIVE"):
        iam = _member_iam(client, account.account_id)
        for user in account.users:
            for key in iam.list_access_keys(UserName=user.name)["AccessKeyMetadata"]:
                found[key["AccessKeyId"]] = (account.account_id, user.name)
    return found


def test_planted_keys_are_inventory_keys_in_every_source(seeded, client) -> None:
    manifest = seeded[1]
    sources = {p["source"] for p in manifest.planted_keys}
    assert sources == {
        "working-tree",
        "archive",
        "git-history",
        "lambda",
        "ssm",
        "ec2-launch-template",
        "codebuild",
    }
    inventory = _workload_key_ids(client, manifest)
    for planted in manifest.planted_keys:
        assert inventory[planted["key_id"]] == (planted["account_id"], planted["user"])
    aws_side = {p["account_id"] for p in manifest.planted_keys if " / " in p["where"]}
    assert (
        len({w.split(" / ")[0] for w in (p["where"] for p in manifest.planted_keys) if " / " in w})
        == 2
    )
    assert aws_side


def test_code_scan_of_the_samples_finds_every_planted_key_and_no_decoy(seeded) -> None:
    from scanner.code_scan import scan_paths

    manifest, samples = seeded[1], seeded[2]
    result = scan_paths([samples])
    hits = {(h.key_id, h.source, h.location, h.history_only) for h in result.hits}
    for planted in (p for p in manifest.planted_keys if " / " not in p["where"]):
        assert (
            planted["key_id"],
            planted["source"],
            planted["where"],
            planted["history_only"],
        ) in hits, planted
    decoys = {d["where"]: d["why"] for d in manifest.decoys}
    assert not {h.location for h in result.hits} & set(decoys)
    assert {i.location: i.reason for i in result.ignored if i.location in decoys} == decoys
    planted_ids = {p["key_id"] for p in manifest.planted_keys}
    # Every hit is a planted key (the manifest itself lists them too).
    assert {h.key_id for h in result.hits} <= planted_ids
    assert git_log(samples).count("\n") == 1  # two commits: the key was added, then removed


def git_log(path: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(path), "log", "--format=%H %s"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_aws_scan_of_the_seeded_accounts_finds_every_planted_key(
    seeded, client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.aws_config_scan import scan_account

    monkeypatch.setenv("AWS_ENDPOINT_URL", sandbox.url)  # the sources make their own clients
    manifest = seeded[1]
    found = set()
    for account in (a for a in manifest.accounts if a.status == "ACTIVE"):
        creds = client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account.account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test",
        )["Credentials"]
        member = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )
        result = scan_account(member, account.account_id)
        found |= {(h.key_id, h.source, h.location, h.secret_found) for h in result.hits}
        assert not result.ignored
    for planted in (p for p in manifest.planted_keys if " / " in p["where"]):
        assert (
            planted["key_id"],
            planted["source"],
            planted["where"],
            planted["with_secret"],
        ) in found, planted
    assert {k for k, *_ in found} == {
        p["key_id"] for p in manifest.planted_keys if " / " in p["where"]
    }


# Last: it re-seeds the module's sandbox, which the tests above read.
def test_empty_seed_has_no_iam_users(sandbox: Sandbox, client) -> None:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    manifest = _seed(sandbox, session, 3, accounts=5, empty=True)
    assert len(manifest.accounts) == 2
    assert all(not a.users for a in manifest.accounts)
    assert manifest.identity_users == []
    for account in manifest.accounts:
        assert _member_iam(client, account.account_id).list_users()["Users"] == []

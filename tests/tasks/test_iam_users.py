"""Inventory of one account against moto: every kind of credential, policies, classification."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from domain.access import effective_access
from domain.classification import ClassificationRules, classify_user
from domain.records import AccessKey, Account, User, UserClass
from tasks.aws import AwsSessions
from tasks.iam_users import inventory_account, inventory_client

RULES = ClassificationRules(protected_globs=("breakglass-*",), inactive_days=90)
NOW = datetime(2026, 11, 28, tzinfo=UTC)
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
S3_READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}],
}


def self_signed_certificate() -> str:
    """A real X.509 certificate: UploadSigningCertificate parses what it is given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soap-user")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@example.com"


@pytest.fixture
def member(aws):
    sessions = AwsSessions(region="us-east-1")
    org = sessions.management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    account_id = org.create_account(AccountName="dev", Email="dev@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    return sessions.for_account(account_id), Account(account_id=account_id, name="dev")


def by_name(inventory):
    return {u.name: u for u in inventory.users}


def test_every_kind_of_credential_is_read(member):
    session, account = member
    iam = session.client("iam")
    iam.create_user(UserName="alice", Tags=[{"Key": "email", "Value": "alice@example.com"}])
    iam.create_login_profile(UserName="alice", Password="Sandbox-Only-1!")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"]
    iam.enable_mfa_device(
        UserName="alice",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    iam.create_user(UserName="ci-deploy")
    first = iam.create_access_key(UserName="ci-deploy")["AccessKey"]["AccessKeyId"]
    second = iam.create_access_key(UserName="ci-deploy")["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName="ci-deploy", AccessKeyId=second, Status="Inactive")
    iam.create_user(UserName="git-user")
    iam.upload_ssh_public_key(UserName="git-user", SSHPublicKeyBody=SSH_KEY)
    iam.create_user(UserName="soap-user")
    iam.upload_signing_certificate(UserName="soap-user", CertificateBody=self_signed_certificate())

    inventory = inventory_account(session, account, RULES, now=NOW)
    users = by_name(inventory)

    alice = users["alice"]
    assert alice.password_enabled and alice.mfa_active
    assert [d.serial for d in alice.mfa_devices] == [device["SerialNumber"]]
    assert alice.mfa_devices[0].virtual
    assert alice.tags == {"email": "alice@example.com"}
    ci = users["ci-deploy"]
    assert {(k.key_id, k.status) for k in ci.access_keys} == {
        (first, "Active"),
        (second, "Inactive"),
    }
    assert not ci.password_enabled
    assert [k.status for k in users["git-user"].ssh_public_keys] == ["Active"]
    assert [c.status for c in users["soap-user"].signing_certificates] == ["Active"]
    # moto does not implement service-specific credentials: a recorded gap, not a crash.
    assert "iam:ListServiceSpecificCredentials" in inventory.gaps


def test_users_read_in_parallel_equal_users_read_one_by_one(member):
    session, account = member
    iam = session.client("iam")
    for n in range(12):
        iam.create_user(UserName=f"user-{n:02d}")
        if n % 2:
            iam.create_access_key(UserName=f"user-{n:02d}")
        if n % 3 == 0:
            iam.upload_ssh_public_key(UserName=f"user-{n:02d}", SSHPublicKeyBody=SSH_KEY)
    iam.create_login_profile(UserName="user-04", Password="Sandbox-Only-1!")

    timings: dict[str, float] = {}
    serial = inventory_account(session, account, RULES, now=NOW)
    parallel = inventory_account(
        session, account, RULES, now=NOW, timings=timings, user_concurrency=4
    )

    assert [u.name for u in parallel.users] == [f"user-{n:02d}" for n in range(12)]
    assert asdict(parallel) == asdict(serial)
    assert sum(len(u.access_keys) for u in parallel.users) == 6
    assert sum(len(u.ssh_public_keys) for u in parallel.users) == 4
    assert parallel.gaps == ["iam:ListServiceSpecificCredentials"]
    assert set(timings) == {"client", "bulk_reads", "per_user"}


def _slow_and_failing_sends(
    session, slow: str, failing: tuple[str, ...], sent: list, delay: float = 0.3
):
    """Hooks on the session's clients: ``slow`` answers ``delay`` s late; ``failing`` never
    connect."""
    import threading
    import time

    from botocore.exceptions import EndpointConnectionError

    lock = threading.Lock()

    def before_call(model, **_):
        # before-call: in-process moto answers at before-send, ahead of any later hook there.
        with lock:
            sent.append((model.name, time.monotonic()))
        if model.name in failing:
            raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com")
        if model.name == slow:
            time.sleep(delay)

    session.events.register("before-call.iam", before_call)


def test_the_bulk_reads_go_at_once(member):
    import time

    session, account = member
    session.client("iam").create_user(UserName="alice")
    sent: list = []
    _slow_and_failing_sends(session, "GetAccountAuthorizationDetails", (), sent)
    inventory_account(session, account, RULES, now=NOW, user_concurrency=4)
    first = {}
    for operation, at in sent:
        first.setdefault(operation, at)
    details_answered = first["GetAccountAuthorizationDetails"] + 0.3
    # Sent while the (slow) authorization details were still on their way.
    assert first["GetCredentialReport"] < details_answered
    assert first["ListServiceSpecificCredentials"] < details_answered
    assert time.monotonic() > details_answered


def test_bulk_reads_failing_together_report_the_first_a_serial_read_meets(member):
    from domain.errors import AwsUnreachableError

    session, account = member
    session.client("iam").create_user(UserName="alice")
    failing = ("GetAccountAuthorizationDetails", "GetCredentialReport")
    _slow_and_failing_sends(session, "", failing, [])
    for concurrency in (1, 4):
        with pytest.raises(AwsUnreachableError) as caught:
            inventory_account(session, account, RULES, now=NOW, user_concurrency=concurrency)
        assert caught.value.operation == "iam:GetAccountAuthorizationDetails"


def test_policies_groups_and_documents(aws_managed_policies, member):
    session, account = member
    iam = session.client("iam")
    policy_arn = iam.create_policy(PolicyName="s3-read", PolicyDocument=json.dumps(S3_READ))[
        "Policy"
    ]["Arn"]
    iam.create_group(GroupName="admins")
    iam.put_group_policy(
        GroupName="admins", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    iam.attach_group_policy(GroupName="admins", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    iam.create_user(UserName="bob")
    iam.add_user_to_group(GroupName="admins", UserName="bob")
    iam.attach_user_policy(UserName="bob", PolicyArn=policy_arn)
    iam.put_user_policy(UserName="bob", PolicyName="own", PolicyDocument=json.dumps(S3_READ))
    iam.create_policy(PolicyName="unreferenced", PolicyDocument=json.dumps(S3_READ))

    inventory = inventory_account(session, account, RULES, now=NOW)
    bob = by_name(inventory)["bob"]
    assert bob.groups == ["admins"]
    assert [p.arn for p in bob.attached_policies] == [policy_arn]
    assert bob.inline_policies[0].document == S3_READ
    policies = {p.arn: p for p in inventory.managed_policies}
    # Only what users reach is kept, with its default version's document.
    assert set(policies) == {policy_arn, "arn:aws:iam::aws:policy/ReadOnlyAccess"}
    assert policies[policy_arn].document == S3_READ and not policies[policy_arn].aws_managed
    assert policies["arn:aws:iam::aws:policy/ReadOnlyAccess"].aws_managed
    access = effective_access(bob, inventory.groups)
    assert access.managed_policy_arns == sorted(
        [policy_arn, "arn:aws:iam::aws:policy/ReadOnlyAccess"]
    )
    assert [source for source, _ in access.inline_policies] == ["user", "group:admins"]


def test_policy_documents_are_decoded_where_kept(member):
    """The inventory's client leaves documents as IAM sends them (botocore decoded every
    version of every policy); the one kept decodes to the JSON botocore gives."""
    session, account = member
    iam = session.client("iam")
    arn = iam.create_policy(PolicyName="s3", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    iam.create_policy_version(
        PolicyArn=arn, PolicyDocument=json.dumps(ADMIN_POLICY), SetAsDefault=True
    )
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps({**S3_READ, "Id": "v3"}))
    iam.create_user(UserName="bob")
    iam.attach_user_policy(UserName="bob", PolicyArn=arn)
    iam.put_user_policy(UserName="bob", PolicyName="own", PolicyDocument=json.dumps(S3_READ))

    raw = inventory_client(session).get_account_authorization_details(
        Filter=["User", "LocalManagedPolicy"]
    )
    versions = raw["Policies"][0]["PolicyVersionList"]
    assert len(versions) == 3
    assert all(isinstance(v["Document"], str) for v in versions)
    assert isinstance(raw["UserDetailList"][0]["UserPolicyList"][0]["PolicyDocument"], str)
    decoded = iam.get_account_authorization_details(Filter=["LocalManagedPolicy"])
    default = next(v for v in decoded["Policies"][0]["PolicyVersionList"] if v["IsDefaultVersion"])

    inventory = inventory_account(session, account, RULES, now=NOW)
    assert [p.document for p in inventory.managed_policies] == [default["Document"]]
    assert default["Document"] == ADMIN_POLICY
    assert by_name(inventory)["bob"].inline_policies[0].document == S3_READ


def test_protected_by_glob_and_by_tag(member):
    session, account = member
    iam = session.client("iam")
    iam.create_user(UserName="BreakGlass-Admin")
    iam.create_login_profile(UserName="BreakGlass-Admin", Password="Sandbox-Only-1!")
    iam.create_user(UserName="vault", Tags=[{"Key": "iamc:protected", "Value": "True"}])
    iam.create_access_key(UserName="vault")
    users = by_name(inventory_account(session, account, RULES, now=datetime.now(UTC)))
    assert users["BreakGlass-Admin"].user_class is UserClass.PROTECTED
    assert "glob 'breakglass-*'" in users["BreakGlass-Admin"].class_reason
    assert users["vault"].user_class is UserClass.PROTECTED
    assert "tagged iamc:protected=true" in users["vault"].class_reason


def user(**kwargs) -> User:
    base = {"name": "u", "user_id": "AIDAEXAMPLE", "arn": "arn:aws:iam::111111111111:user/u"}
    base["created"] = NOW - timedelta(days=400)
    return User(**{**base, **kwargs})


def recent(days: int = 1) -> datetime:
    return NOW - timedelta(days=days)


@pytest.mark.parametrize(
    ("record", "expected", "reason"),
    [
        (user(), UserClass.UNUSED, "no usable credentials"),
        (
            user(access_keys=[AccessKey("AKIA1", "Inactive", last_used_date=recent())]),
            UserClass.UNUSED,
            "no usable credentials",
        ),
        (
            user(
                password_enabled=True,
                password_last_used=recent(),
                access_keys=[AccessKey("AKIA1", "Active", last_used_date=recent())],
            ),
            UserClass.HUMAN,
            "console password",
        ),
        (
            user(access_keys=[AccessKey("AKIA1", "Active", last_used_date=recent(3))]),
            UserClass.WORKLOAD,
            "programmatic credentials only (1 active access key)",
        ),
        (
            user(password_enabled=True, password_last_used=recent(200)),
            UserClass.UNUSED,
            "last used 2026-05-12",
        ),
        (
            user(password_enabled=True, created=recent(5)),
            UserClass.HUMAN,
            "console password",
        ),
        (
            user(password_enabled=True, created=recent(100)),
            UserClass.UNUSED,
            "never used",
        ),
        (
            # A key used yesterday keeps a console user whose password is stale in play.
            user(
                password_enabled=True,
                password_last_used=recent(300),
                access_keys=[AccessKey("AKIA1", "Active", last_used_date=recent())],
            ),
            UserClass.HUMAN,
            "console password",
        ),
    ],
    ids=[
        "nothing",
        "inactive-key-only",
        "console-and-keys",
        "keys-only",
        "stale-console",
        "new-console",
        "never-used-console",
        "stale-password-fresh-key",
    ],
)
def test_classification_edge_cases(record, expected, reason):
    klass, why, _ = classify_user(record, RULES, NOW)
    assert klass is expected
    assert reason in why


def test_mfa_only_user_with_fresh_key_is_human():
    from domain.records import MfaDevice

    record = user(
        mfa_devices=[MfaDevice("arn:aws:iam::1:mfa/u")],
        access_keys=[AccessKey("AKIA1", "Active", last_used_date=recent())],
    )
    assert classify_user(record, RULES, NOW)[0] is UserClass.HUMAN


@pytest.fixture
def sandbox_account(monkeypatch):
    """The sandbox server (moto lacks service-specific credentials) and its default account."""
    from sandbox.server import Sandbox

    with Sandbox(port=0) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield boto3.Session(region_name="us-east-1"), Account(account_id="123456789012")


def _count_and_refuse_all_users(session: boto3.Session, refuse: bool) -> list[dict]:
    """ListServiceSpecificCredentials calls the session makes; optionally refuse AllUsers as
    an endpoint without it would (ValidationError: a role caller must name a user)."""
    calls: list[dict] = []

    def before_call(params, **_):
        body = {k: v for k, v in params["body"].items() if k not in ("Action", "Version")}
        calls.append(body)
        if refuse and body.get("AllUsers"):
            return AWSResponse("", 400, {}, None), {
                "Error": {"Code": "ValidationError", "Message": "Must specify userName"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        return None

    session.events.register("before-call.iam.ListServiceSpecificCredentials", before_call)
    return calls


def test_service_credentials_of_all_users_in_one_call_equal_user_by_user(sandbox_account):
    session, account = sandbox_account
    iam = session.client("iam")
    for n in range(6):
        iam.create_user(UserName=f"git-{n}")
        if n % 2 == 0:
            iam.create_service_specific_credential(
                UserName=f"git-{n}", ServiceName="codecommit.amazonaws.com"
            )
    iam.create_service_specific_credential(UserName="git-0", ServiceName="cassandra.amazonaws.com")

    all_users = _count_and_refuse_all_users(session, refuse=False)
    bulk = inventory_account(session, account, RULES, now=NOW, user_concurrency=4)
    # A fresh session: the hook of the first stays on its own session.
    fallback_session = boto3.Session(region_name="us-east-1")
    per_user = _count_and_refuse_all_users(fallback_session, refuse=True)
    one_by_one = inventory_account(fallback_session, account, RULES, now=NOW, user_concurrency=4)

    assert all_users == [{"AllUsers": "true"}]
    assert per_user[0] == {"AllUsers": "true"}
    assert sorted(c["UserName"] for c in per_user[1:]) == [u.name for u in one_by_one.users]
    assert asdict(bulk) == asdict(one_by_one)
    creds = {
        u.name: sorted(c.service_name for c in u.service_specific_credentials) for u in bulk.users
    }
    assert creds["git-0"] == ["cassandra.amazonaws.com", "codecommit.amazonaws.com"]
    assert creds["git-1"] == [] and creds["git-2"] == ["codecommit.amazonaws.com"]
    assert "iam:ListServiceSpecificCredentials" not in bulk.gaps


def test_failed_authorization_details_fail_the_account_without_waiting_for_the_report(member):
    import time

    from domain.errors import AwsUnreachableError

    session, account = member
    session.client("iam").create_user(UserName="alice")
    sent: list = []
    _slow_and_failing_sends(
        session, "GetCredentialReport", ("GetAccountAuthorizationDetails",), sent, delay=1.0
    )
    began = time.monotonic()
    with pytest.raises(AwsUnreachableError) as caught:
        inventory_account(session, account, RULES, now=NOW, user_concurrency=4)
    assert time.monotonic() - began < 0.8
    assert caught.value.operation == "iam:GetAccountAuthorizationDetails"
    time.sleep(1.0)  # the abandoned report read ends before moto's mock does

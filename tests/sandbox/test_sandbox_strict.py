"""The sandbox's strictness rules, each against a live server, through boto3."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from domain.errors import SandboxError
from sandbox.control import SandboxControl
from sandbox.seed_iam_users import signing_certificate
from sandbox.server import Sandbox

_names = itertools.count(1)
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ACCOUNT = "111122223333"


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# -- DeleteUser -----------------------------------------------------------------------------


def _add_dependent(iam: Any, user: str, kind: str) -> Callable[[], None]:
    """Give ``user`` one dependent object of ``kind``; return how to remove it."""
    if kind == "login-profile":
        iam.create_login_profile(UserName=user, Password="Sandbox-Passw0rd!")
        return lambda: iam.delete_login_profile(UserName=user)
    if kind == "access-keys":
        key_id = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        return lambda: iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    if kind == "signing-certificates":
        cert = iam.upload_signing_certificate(UserName=user, CertificateBody=signing_certificate())[
            "Certificate"
        ]["CertificateId"]
        return lambda: iam.delete_signing_certificate(UserName=user, CertificateId=cert)
    if kind == "ssh-public-keys":
        key = iam.upload_ssh_public_key(UserName=user, SSHPublicKeyBody="ssh-ed25519 AAAAC3 t@h")
        key_id = key["SSHPublicKey"]["SSHPublicKeyId"]
        return lambda: iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=key_id)
    if kind == "mfa-devices":
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"][
            "SerialNumber"
        ]
        iam.enable_mfa_device(
            UserName=user,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )

        def remove() -> None:
            iam.deactivate_mfa_device(UserName=user, SerialNumber=serial)
            iam.delete_virtual_mfa_device(SerialNumber=serial)

        return remove
    if kind == "inline-policies":
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=_ALLOW_ALL)
        return lambda: iam.delete_user_policy(UserName=user, PolicyName="p")
    if kind == "attached-policies":
        # An AWS-managed policy: proves MOTO_IAM_LOAD_MANAGED_POLICIES took effect.
        iam.attach_user_policy(UserName=user, PolicyArn=READ_ONLY)
        return lambda: iam.detach_user_policy(UserName=user, PolicyArn=READ_ONLY)
    if kind == "groups":
        group = f"group-{user}"
        iam.create_group(GroupName=group)
        iam.add_user_to_group(UserName=user, GroupName=group)
        return lambda: iam.remove_user_from_group(UserName=user, GroupName=group)
    raise AssertionError(kind)


_ALLOW_ALL = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
)

# In the order AWS documents for deleting a user, with a word of the expected message.
DEPENDENTS = (
    ("login-profile", "login profile"),
    ("access-keys", "access keys"),
    ("signing-certificates", "signing certificates"),
    ("ssh-public-keys", "SSH public keys"),
    ("mfa-devices", "MFA device"),
    ("inline-policies", "delete policies"),
    ("attached-policies", "detach all policies"),
    ("groups", "groups"),
)


@pytest.mark.parametrize(("kind", "words"), DEPENDENTS, ids=[d[0] for d in DEPENDENTS])
def test_delete_user_refuses_while_dependent_remains(client, control, kind, words) -> None:
    iam = client("iam")
    user = f"dependent-{kind}-{next(_names)}"
    iam.create_user(UserName=user)
    remove = _add_dependent(iam, user, kind)

    with pytest.raises(ClientError) as err:
        iam.delete_user(UserName=user)
    assert _code(err) == ("DeleteConflict", 409)
    assert words in err.value.response["Error"]["Message"]
    assert iam.get_user(UserName=user)["User"]["UserName"] == user

    remove()
    iam.delete_user(UserName=user)
    with pytest.raises(ClientError) as gone:
        iam.get_user(UserName=user)
    assert _code(gone)[0] == "NoSuchEntity"


def test_delete_user_succeeds_after_teardown_in_aws_order(client, control) -> None:
    iam = client("iam")
    user = f"everything-{next(_names)}"
    iam.create_user(UserName=user)
    removers = [(words, _add_dependent(iam, user, kind)) for kind, words in DEPENDENTS]
    for words, remove in removers:
        with pytest.raises(ClientError) as err:
            iam.delete_user(UserName=user)
        assert _code(err) == ("DeleteConflict", 409)
        assert words in err.value.response["Error"]["Message"]
        remove()
    iam.delete_user(UserName=user)


def test_delete_user_conflicts_can_be_switched_off(client, control) -> None:
    control.configure(delete_conflicts=False)
    iam = client("iam")
    user = f"lenient-{next(_names)}"
    iam.create_user(UserName=user)
    iam.create_access_key(UserName=user)
    iam.delete_user(UserName=user)  # moto's own leniency


# -- sso-admin: asynchronous statuses -------------------------------------------------------


@pytest.fixture
def identity_center(client) -> dict[str, str]:
    sso = client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    name = f"PS{next(_names)}"
    ps = sso.create_permission_set(InstanceArn=instance, Name=name)["PermissionSet"]
    return {"instance": instance, "permission_set": ps["PermissionSetArn"], "name": name}


def _assign(sso: Any, ic: dict[str, str], principal: str) -> dict[str, Any]:
    return sso.create_account_assignment(
        InstanceArn=ic["instance"],
        TargetId=ACCOUNT,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ic["permission_set"],
        PrincipalType="USER",
        PrincipalId=principal,
    )["AccountAssignmentCreationStatus"]


def _creation_status(sso: Any, ic: dict[str, str], request_id: str) -> dict[str, Any]:
    return sso.describe_account_assignment_creation_status(
        InstanceArn=ic["instance"], AccountAssignmentCreationRequestId=request_id
    )["AccountAssignmentCreationStatus"]


def test_assignment_creation_is_in_progress_then_succeeded(client, control, identity_center):
    sso = client("sso-admin")
    created = _assign(sso, identity_center, "user-a")
    other = _assign(sso, identity_center, "user-b")
    assert created["Status"] == "IN_PROGRESS"
    assert created["RequestId"] != other["RequestId"]

    statuses = [_creation_status(sso, identity_center, created["RequestId"]) for _ in range(3)]
    assert [s["Status"] for s in statuses] == ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]
    assert statuses[-1]["PrincipalId"] == "user-a"
    assert statuses[-1]["TargetId"] == ACCOUNT

    listed = sso.list_account_assignment_creation_status(InstanceArn=identity_center["instance"])
    ids = {s["RequestId"] for s in listed["AccountAssignmentsCreationStatus"]}
    assert {created["RequestId"], other["RequestId"]} <= ids


def test_in_progress_polls_are_configurable(client, control, identity_center) -> None:
    control.configure(async_in_progress_polls=0)
    sso = client("sso-admin")
    created = _assign(sso, identity_center, "user-now")
    assert created["Status"] == "IN_PROGRESS"
    assert _creation_status(sso, identity_center, created["RequestId"])["Status"] == "SUCCEEDED"


def test_async_requests_complete_by_time_however_often_polled(client, control, identity_center):
    """As AWS's: a request completes some time after it was made; polls don't advance it."""
    control.configure(async_completion_ms=600, async_in_progress_polls=0)
    sso = client("sso-admin")
    created = _assign(sso, identity_center, "user-timed")
    made = time.monotonic()
    assert created["Status"] == "IN_PROGRESS"
    early = [_creation_status(sso, identity_center, created["RequestId"]) for _ in range(5)]
    if time.monotonic() - made < 0.5:  # a loaded machine may take longer than 600 ms
        assert {s["Status"] for s in early} == {"IN_PROGRESS"}
        listed = sso.list_account_assignment_creation_status(
            InstanceArn=identity_center["instance"], Filter={"Status": "IN_PROGRESS"}
        )["AccountAssignmentsCreationStatus"]
        assert created["RequestId"] in {s["RequestId"] for s in listed}
    time.sleep(max(0.0, 0.7 - (time.monotonic() - made)))
    # One poll after the time, and a List*Status of the same, report it done.
    listed = sso.list_account_assignment_creation_status(
        InstanceArn=identity_center["instance"], Filter={"Status": "IN_PROGRESS"}
    )["AccountAssignmentsCreationStatus"]
    assert created["RequestId"] not in {s["RequestId"] for s in listed}
    assert _creation_status(sso, identity_center, created["RequestId"])["Status"] == "SUCCEEDED"


def test_assignment_deletion_is_in_progress_then_succeeded(client, control, identity_center):
    sso = client("sso-admin")
    _assign(sso, identity_center, "user-del")
    deleted = sso.delete_account_assignment(
        InstanceArn=identity_center["instance"],
        TargetId=ACCOUNT,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=identity_center["permission_set"],
        PrincipalType="USER",
        PrincipalId="user-del",
    )["AccountAssignmentDeletionStatus"]
    assert deleted["Status"] == "IN_PROGRESS"
    statuses = [
        sso.describe_account_assignment_deletion_status(
            InstanceArn=identity_center["instance"],
            AccountAssignmentDeletionRequestId=deleted["RequestId"],
        )["AccountAssignmentDeletionStatus"]["Status"]
        for _ in range(3)
    ]
    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]


def test_provisioning_is_in_progress_then_succeeded(client, control, identity_center) -> None:
    sso = client("sso-admin")
    provisioned = sso.provision_permission_set(
        InstanceArn=identity_center["instance"],
        PermissionSetArn=identity_center["permission_set"],
        TargetType="AWS_ACCOUNT",
        TargetId=ACCOUNT,
    )["PermissionSetProvisioningStatus"]
    assert provisioned["Status"] == "IN_PROGRESS"
    assert provisioned["AccountId"] == ACCOUNT
    statuses = [
        sso.describe_permission_set_provisioning_status(
            InstanceArn=identity_center["instance"],
            ProvisionPermissionSetRequestId=provisioned["RequestId"],
        )["PermissionSetProvisioningStatus"]["Status"]
        for _ in range(3)
    ]
    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]
    listed = sso.list_permission_set_provisioning_status(
        InstanceArn=identity_center["instance"], Filter={"Status": "SUCCEEDED"}
    )["PermissionSetsProvisioningStatus"]
    assert provisioned["RequestId"] in {s["RequestId"] for s in listed}


def test_sets_provisioned_to_an_account_are_that_accounts(client, control, identity_center):
    # moto lists every set ever provisioned, to any account, and none an assignment
    # provisioned; the provision stage decides from this list whether to list assignments.
    sso, instance = client("sso-admin"), identity_center["instance"]
    # Accounts of their own: the module's other tests provision the set to ACCOUNT.
    first, other = "555566667777", "444455556666"

    def provisioned(account_id: str) -> list[str]:
        return sso.list_permission_sets_provisioned_to_account(
            InstanceArn=instance, AccountId=account_id
        )["PermissionSets"]

    assert provisioned(first) == provisioned(other) == []
    sso.provision_permission_set(
        InstanceArn=instance,
        PermissionSetArn=identity_center["permission_set"],
        TargetType="AWS_ACCOUNT",
        TargetId=first,
    )
    assert provisioned(first) == [identity_center["permission_set"]]
    assert provisioned(other) == []
    sso.create_account_assignment(
        InstanceArn=instance,
        TargetId=other,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=identity_center["permission_set"],
        PrincipalType="USER",
        PrincipalId="user-p",
    )
    assert provisioned(other) == [identity_center["permission_set"]]
    # And the other way round (moto answers its default account whatever was provisioned).
    accounts = sso.list_accounts_for_provisioned_permission_set(
        InstanceArn=instance, PermissionSetArn=identity_center["permission_set"]
    )["AccountIds"]
    assert {first, other} <= set(accounts) and "123456789012" not in accounts


def test_unknown_request_id_is_not_found(client, control, identity_center) -> None:
    with pytest.raises(ClientError) as err:
        _creation_status(
            client("sso-admin"), identity_center, "00000000-0000-4000-8000-000000000000"
        )
    assert _code(err)[0] == "ResourceNotFoundException"


def test_injected_failure_ends_failed_and_assigns_nothing(client, control, identity_center):
    sso = client("sso-admin")
    control.fail_next_assignment(ACCOUNT, identity_center["permission_set"], "Quota exceeded")
    failed = _assign(sso, identity_center, "user-f")
    assert failed["Status"] == "IN_PROGRESS"
    statuses = [_creation_status(sso, identity_center, failed["RequestId"]) for _ in range(3)]
    assert [s["Status"] for s in statuses] == ["IN_PROGRESS", "IN_PROGRESS", "FAILED"]
    assert statuses[-1]["FailureReason"] == "Quota exceeded"
    assignments = sso.list_account_assignments(
        InstanceArn=identity_center["instance"],
        AccountId=ACCOUNT,
        PermissionSetArn=identity_center["permission_set"],
    )["AccountAssignments"]
    assert "user-f" not in {a["PrincipalId"] for a in assignments}

    # The fault is used up: the retry succeeds.
    retried = _assign(sso, identity_center, "user-f")
    final = [_creation_status(sso, identity_center, retried["RequestId"]) for _ in range(3)]
    assert final[-1]["Status"] == "SUCCEEDED"
    assert control.config()["faults"] == []


def test_wildcard_fault_matches_any_permission_set(client, control, identity_center) -> None:
    sso = client("sso-admin")
    control.fail_next_assignment("*", "*", "Wildcard failure")
    failed = _assign(sso, identity_center, "user-w")
    statuses = [_creation_status(sso, identity_center, failed["RequestId"]) for _ in range(3)]
    assert statuses[-1]["Status"] == "FAILED"
    assert statuses[-1]["FailureReason"] == "Wildcard failure"
    assert control.config()["faults"] == []


# -- sso-admin: conflicts -------------------------------------------------------------------


def test_duplicate_permission_set_name_conflicts(client, control, identity_center) -> None:
    sso = client("sso-admin")
    with pytest.raises(ClientError) as err:
        sso.create_permission_set(
            InstanceArn=identity_center["instance"], Name=identity_center["name"]
        )
    assert _code(err) == ("ConflictException", 409)


def test_duplicate_assignment_conflicts(client, control, identity_center) -> None:
    sso = client("sso-admin")
    _assign(sso, identity_center, "user-dup")
    with pytest.raises(ClientError) as err:
        _assign(sso, identity_center, "user-dup")
    assert _code(err) == ("ConflictException", 409)
    # Another principal, same permission set and account, is a different assignment.
    assert _assign(sso, identity_center, "user-dup-2")["Status"] == "IN_PROGRESS"


def test_permission_set_tags_are_kept_listed_and_removed(client, control, identity_center):
    sso = client("sso-admin")
    ids = {
        "InstanceArn": identity_center["instance"],
        "ResourceArn": identity_center["permission_set"],
    }
    assert sso.list_tags_for_resource(**ids)["Tags"] == []
    sso.tag_resource(**ids, Tags=[{"Key": "owner", "Value": "a"}, {"Key": "team", "Value": "x"}])
    sso.tag_resource(**ids, Tags=[{"Key": "owner", "Value": "b"}])  # a key's value replaced
    assert sso.list_tags_for_resource(**ids)["Tags"] == [
        {"Key": "owner", "Value": "b"},
        {"Key": "team", "Value": "x"},
    ]
    sso.untag_resource(**ids, TagKeys=["team"])
    assert sso.list_tags_for_resource(**ids)["Tags"] == [{"Key": "owner", "Value": "b"}]
    with pytest.raises(ClientError) as err:
        sso.list_tags_for_resource(
            InstanceArn=ids["InstanceArn"], ResourceArn=ids["ResourceArn"] + "x"
        )
    assert _code(err) == ("ResourceNotFoundException", 400)


# -- throttling, latency, recorder ----------------------------------------------------------


def test_throttling_is_seen_and_retried_by_botocore(client, control) -> None:
    control.configure(throttle={"iam": 4})
    iam = client("iam", max_attempts=10)
    control.reset_calls()
    retries = sum(iam.get_account_summary()["ResponseMetadata"]["RetryAttempts"] for _ in range(10))
    calls = control.calls()
    assert calls["calls"]["iam:GetAccountSummary"] == 10
    assert calls["throttled"]["iam:GetAccountSummary"] == retries
    assert retries >= 1


def test_throttling_json_service(client, control) -> None:
    control.configure(throttle=True)  # defaults: 20/s for sso-admin and identitystore
    assert control.config()["throttle"]["sso-admin"] == 20
    control.configure(throttle={"sso-admin": 1})
    sso = client("sso-admin", max_attempts=1)  # no retries: see the raw error
    sso.list_instances()
    with pytest.raises(ClientError) as err:
        for _ in range(5):
            sso.list_instances()
    assert _code(err) == ("ThrottlingException", 400)
    assert control.calls()["throttled"]["sso-admin:ListInstances"] >= 1


def test_latency_is_applied(client, control) -> None:
    iam = client("iam")
    iam.get_account_summary()
    control.configure(latency_ms=300)
    started = time.monotonic()
    iam.get_account_summary()
    assert time.monotonic() - started >= 0.3


def test_recorder_counts_and_resets(client, control, sandbox: Sandbox) -> None:
    control.reset_calls()
    assert control.calls()["total"] == 0
    client("iam").list_users()
    client("iam").list_users()
    client("sts").get_caller_identity()
    calls = control.calls()
    assert calls["calls"] == {"iam:ListUsers": 2, "sts:GetCallerIdentity": 1}
    assert calls["by_account"]["123456789012"]["iam:ListUsers"] == 2
    control.reset_calls()
    assert control.calls()["calls"] == {}


def test_config_rejects_unknown_settings(control) -> None:
    with pytest.raises(SandboxError, match="unknown setting"):
        control.configure(no_such_thing=1)
    with pytest.raises(SandboxError, match="unknown API family"):
        control.configure(throttle={"ec2": 1})
    assert control.configure(latency_ms=5)["latency_ms"] == 5


def test_env_points_at_the_sandbox(sandbox: Sandbox) -> None:
    env = sandbox.env()
    assert env["AWS_ENDPOINT_URL"] == sandbox.url
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert SandboxControl(sandbox.url).calls()["total"] >= 0


def test_assume_role_of_a_missing_role_is_denied(client, control) -> None:
    sts = client("sts")
    org = client("organizations")
    try:
        org.create_organization(FeatureSet="ALL")
    except ClientError as err:
        assert err.response["Error"]["Code"] == "AlreadyInOrganizationException"
    account_id = org.create_account(AccountName="assume-test", Email="assume@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    good = f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
    assert sts.assume_role(RoleArn=good, RoleSessionName="test")["Credentials"]["AccessKeyId"]
    missing = f"arn:aws:iam::{account_id}:role/NoSuchRole"
    with pytest.raises(ClientError) as caught:
        sts.assume_role(RoleArn=missing, RoleSessionName="test")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert missing in caught.value.response["Error"]["Message"]
    control.configure(assume_role_checks=False)
    assert sts.assume_role(RoleArn=missing, RoleSessionName="test")["Credentials"]


def test_unimplemented_operation_is_a_501_not_a_retried_500(client, control) -> None:
    iam = client("iam", max_attempts=5)
    control.reset_calls()
    with pytest.raises(ClientError) as caught:
        # moto 5.2.5 lacks it (service-specific credentials and GenerateServiceLastAccessed-
        # Details, once the examples, now exist in the sandbox).
        iam.get_service_last_accessed_details_with_entities(JobId="a" * 36, ServiceNamespace="s3")
    assert caught.value.response["Error"]["Code"] == "NotImplemented"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    # Not retried: one attempt reached the sandbox.
    assert control.calls()["calls"]["iam:GetServiceLastAccessedDetailsWithEntities"] == 1


def test_requests_into_a_member_account_make_only_the_aws_partitions_iam_backend(client, sandbox):
    """moto's own caller lookup made an IAM backend per partition (~0.15 s each, with managed
    policies); the sandbox resolves the caller in the aws partition and tells moto."""
    from moto.iam.models import iam_backends

    org = client("organizations")
    with contextlib.suppress(org.exceptions.AlreadyInOrganizationException):
        org.create_organization(FeatureSet="ALL")  # the module's sandbox may have one
    created = org.create_account(AccountName="partition-probe", Email="probe@example.com")
    member = org.describe_create_account_status(
        CreateAccountRequestId=created["CreateAccountStatus"]["Id"]
    )["CreateAccountStatus"]["AccountId"]
    assumed = client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{member}:role/OrganizationAccountAccessRole",
        RoleSessionName="probe",
    )["Credentials"]
    iam = boto3.Session(
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
        region_name="us-east-1",
    ).client("iam", endpoint_url=sandbox.url)
    iam.create_user(UserName="probe")

    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["probe"]
    assert sorted(iam_backends[member]) == ["aws"]


def test_connections_are_kept_alive_as_aws_keeps_them(client, control, sandbox, monkeypatch):
    """werkzeug closes every connection; AWS does not, and botocore reuses them."""
    import http.client
    from urllib.parse import urlparse

    import urllib3.util.connection

    opened: list[Any] = []
    original = urllib3.util.connection.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(address)
        return original(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    iam = client("iam")
    for _ in range(5):
        iam.list_users()
    assert len(opened) == 1

    # Two requests with bodies on one raw connection: the second is read from its own start.
    url = urlparse(sandbox.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    for _ in range(2):
        connection.request("POST", "/", body="Action=ListUsers&Version=2010-05-08", headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and b"ListUsersResult" in response.read()
        assert not response.will_close
    connection.close()


def test_a_response_goes_out_in_one_write(client, sandbox, monkeypatch):
    """Headers and body in one send: two would cost a syscall and a client wake-up each."""
    import socket
    from urllib.parse import urlparse

    port = urlparse(sandbox.url).port
    writes: list[int] = []

    def counting(method: str) -> Any:
        original = getattr(socket.socket, method)

        def write(self: socket.socket, data: Any, *args: Any) -> Any:
            if self.getsockname()[1] == port:  # the server's end of a connection
                writes.append(len(data))
            return original(self, data, *args)

        return write

    iam = client("iam")
    iam.list_users()  # the connection is open before counting
    for method in ("send", "sendall"):
        monkeypatch.setattr(socket.socket, method, counting(method))
    for _ in range(3):
        iam.list_users()
    assert len(writes) == 3


def test_an_idle_kept_alive_connection_timing_out_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from sandbox.server import _quiet_handler

    handler = object.__new__(_quiet_handler())  # only its logging, no socket
    handler.client_address = ("127.0.0.1", 1)
    handler.requestline = ""
    # An in-process CLI test earlier on this worker may have left the `sandbox` logger not
    # propagating (iamc.cli configures it): catch the sandbox's records at its own logger.
    sandbox_logger = logging.getLogger("sandbox.server")
    sandbox_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, "sandbox.server"):
            handler.log_error("Request timed out: %r", TimeoutError("timed out"))
            handler.log_error("code %d, message %s", 400, "Bad request syntax")
    finally:
        sandbox_logger.removeHandler(caplog.handler)
    ours = [r for r in caplog.records if r.name == "sandbox.server"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all("timed out" not in message for message in errors)
    assert any("idle connection closed" in r.getMessage() for r in ours)


# -- DescribeRegions and the deny list ------------------------------------------------------


def test_describe_regions_answers_the_enabled_regions_of_the_aws_partition(client, control) -> None:
    from sandbox.regions import DEFAULT_ENABLED_REGIONS

    ec2 = client("ec2")
    # The suite's sandboxes report five (IAMC_SANDBOX_ENABLED_REGIONS); by default, all.
    narrowed = {r["RegionName"] for r in ec2.describe_regions()["Regions"]}
    assert narrowed == {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1"}
    control.configure(enabled_regions=list(DEFAULT_ENABLED_REGIONS))
    enabled = {r["RegionName"] for r in ec2.describe_regions(AllRegions=False)["Regions"]}
    every = {r["RegionName"] for r in ec2.describe_regions(AllRegions=True)["Regions"]}

    # moto alone answers AllRegions=false with opt-in, China and GovCloud regions too.
    assert enabled == set(DEFAULT_ENABLED_REGIONS)
    assert {"cn-north-1", "us-gov-west-1", "af-south-1"} <= every - enabled
    assert {r["RegionName"] for r in ec2.describe_regions()["Regions"]} == enabled


def test_a_denied_call_is_refused_with_access_denied_and_others_go_on(client, control) -> None:
    kms = client(
        "kms",
        target=boto3.Session(
            region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t"
        ),
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    control.configure(deny=["kms:GetKeyPolicy"])

    with pytest.raises(ClientError) as err:
        kms.get_key_policy(KeyId=key_id, PolicyName="default")

    assert _code(err) == ("AccessDeniedException", 400)
    assert "kms:GetKeyPolicy" in str(err.value)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
    control.configure(deny=[])
    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]


def test_the_deny_list_takes_service_operation_names_only(control) -> None:
    with pytest.raises(SandboxError):
        control.configure(deny=["GetKeyPolicy"])

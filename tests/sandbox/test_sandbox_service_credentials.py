"""IAM service-specific credentials, which moto lacks and the sandbox keeps, through boto3."""

from __future__ import annotations

import itertools
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

_names = itertools.count(1)
CODECOMMIT = "codecommit.amazonaws.com"
KEYSPACES = "cassandra.amazonaws.com"
ACCOUNT = "123456789012"  # moto's default account, where the "testing" credentials land


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _user(iam: Any, prefix: str) -> str:
    name = f"{prefix}-{next(_names)}"
    iam.create_user(UserName=name)
    return name


def test_create_list_update_reset_delete(client, control) -> None:
    iam = client("iam")
    user = _user(iam, "git")
    created = iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)[
        "ServiceSpecificCredential"
    ]
    cred_id = created["ServiceSpecificCredentialId"]
    assert cred_id.startswith("ACCA") and len(cred_id) >= 20
    assert created["ServiceUserName"] == f"{user}-at-{ACCOUNT}"
    assert created["Status"] == "Active"
    assert created["UserName"] == user
    assert len(created["ServicePassword"]) >= 40

    listed = iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]
    assert [c["ServiceSpecificCredentialId"] for c in listed] == [cred_id]
    assert "ServicePassword" not in listed[0]  # only Create and Reset show the password
    assert listed[0]["ServiceName"] == CODECOMMIT
    assert listed[0]["CreateDate"]

    iam.update_service_specific_credential(
        UserName=user, ServiceSpecificCredentialId=cred_id, Status="Inactive"
    )
    listed = iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]
    assert listed[0]["Status"] == "Inactive"

    reset = iam.reset_service_specific_credential(
        UserName=user, ServiceSpecificCredentialId=cred_id
    )["ServiceSpecificCredential"]
    assert reset["ServicePassword"] != created["ServicePassword"]
    assert reset["ServiceSpecificCredentialId"] == cred_id

    iam.delete_service_specific_credential(UserName=user, ServiceSpecificCredentialId=cred_id)
    assert iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"] == []


def test_service_name_filter_and_quota(client, control) -> None:
    iam = client("iam")
    user = _user(iam, "svc")
    for _ in range(2):
        iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)
    keyspaces = iam.create_service_specific_credential(UserName=user, ServiceName=KEYSPACES)
    with pytest.raises(ClientError) as err:
        iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)
    assert _code(err) == ("LimitExceeded", 409)

    only = iam.list_service_specific_credentials(UserName=user, ServiceName=KEYSPACES)[
        "ServiceSpecificCredentials"
    ]
    assert [c["ServiceSpecificCredentialId"] for c in only] == [
        keyspaces["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    ]
    assert (
        len(iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]) == 3
    )
    with pytest.raises(ClientError) as unsupported:
        iam.create_service_specific_credential(UserName=user, ServiceName="s3.amazonaws.com")
    assert _code(unsupported) == ("NotSupportedService", 404)


def test_unknown_user_or_credential_is_no_such_entity(client, control) -> None:
    iam = client("iam")
    with pytest.raises(ClientError) as err:
        iam.create_service_specific_credential(UserName="nobody-here", ServiceName=CODECOMMIT)
    assert _code(err) == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as err:
        iam.list_service_specific_credentials(UserName="nobody-here")
    assert _code(err) == ("NoSuchEntity", 404)

    user = _user(iam, "nocred")
    for call in (
        lambda: iam.update_service_specific_credential(
            UserName=user, ServiceSpecificCredentialId="ACCAEXAMPLE123EXAMPLE", Status="Active"
        ),
        lambda: iam.reset_service_specific_credential(
            UserName=user, ServiceSpecificCredentialId="ACCAEXAMPLE123EXAMPLE"
        ),
        lambda: iam.delete_service_specific_credential(
            UserName=user, ServiceSpecificCredentialId="ACCAEXAMPLE123EXAMPLE"
        ),
    ):
        with pytest.raises(ClientError) as missing:
            call()
        assert _code(missing) == ("NoSuchEntity", 404)

    # Another user's credential is not this user's.
    other = _user(iam, "owner")
    cred = iam.create_service_specific_credential(UserName=other, ServiceName=CODECOMMIT)
    cred_id = cred["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    with pytest.raises(ClientError) as foreign:
        iam.delete_service_specific_credential(UserName=user, ServiceSpecificCredentialId=cred_id)
    assert _code(foreign) == ("NoSuchEntity", 404)


def test_without_user_name_lists_the_callers_own(client, control, sandbox) -> None:
    iam = client("iam")
    user = _user(iam, "self")
    key = iam.create_access_key(UserName=user)["AccessKey"]
    cred = iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)
    own = boto3.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name="us-east-1",
    )
    listed = client("iam", target=own).list_service_specific_credentials()[
        "ServiceSpecificCredentials"
    ]
    assert [c["ServiceSpecificCredentialId"] for c in listed] == [
        cred["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    ]
    # The account's root/admin caller has none of its own.
    assert iam.list_service_specific_credentials()["ServiceSpecificCredentials"] == []
    everyone = iam.list_service_specific_credentials(AllUsers=True)["ServiceSpecificCredentials"]
    assert user in {c["UserName"] for c in everyone}


def test_delete_user_conflicts_while_a_credential_remains(client, control) -> None:
    iam = client("iam")
    user = _user(iam, "conflict")
    cred = iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)
    cred_id = cred["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    with pytest.raises(ClientError) as err:
        iam.delete_user(UserName=user)
    assert _code(err) == ("DeleteConflict", 409)
    assert "service specific credentials" in err.value.response["Error"]["Message"]

    iam.delete_service_specific_credential(UserName=user, ServiceSpecificCredentialId=cred_id)
    iam.delete_user(UserName=user)


def test_credentials_go_with_their_user(client, control) -> None:
    control.configure(delete_conflicts=False)  # moto's leniency: the user goes regardless
    iam = client("iam")
    user = _user(iam, "gone")
    iam.create_service_specific_credential(UserName=user, ServiceName=CODECOMMIT)
    iam.delete_user(UserName=user)
    iam.create_user(UserName=user)  # a new user of the same name inherits nothing
    assert iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"] == []


def test_all_users_lists_every_users_credentials_in_pages(client, control) -> None:
    iam = client("iam")
    users = [_user(iam, "every") for _ in range(3)]
    made = {
        iam.create_service_specific_credential(UserName=u, ServiceName=service)[
            "ServiceSpecificCredential"
        ]["ServiceSpecificCredentialId"]: u
        for u in users
        for service in (CODECOMMIT, KEYSPACES)
    }
    listed, marker, pages = [], {}, 0
    while True:
        page = iam.list_service_specific_credentials(AllUsers=True, MaxItems=2, **marker)
        pages += 1
        assert len(page["ServiceSpecificCredentials"]) <= 2
        listed.extend(page["ServiceSpecificCredentials"])
        if not page["IsTruncated"]:
            break
        marker = {"Marker": page["Marker"]}
    ours = {
        c["ServiceSpecificCredentialId"]: c["UserName"] for c in listed if c["UserName"] in users
    }
    assert ours == made
    assert pages >= 3
    assert all("ServicePassword" not in c for c in listed)
    keyspaces = iam.list_service_specific_credentials(AllUsers=True, ServiceName=KEYSPACES)
    assert {c["ServiceName"] for c in keyspaces["ServiceSpecificCredentials"]} == {KEYSPACES}


def test_all_users_with_a_user_name_is_refused(client, control) -> None:
    iam = client("iam")
    user = _user(iam, "both")
    with pytest.raises(ClientError) as err:
        iam.list_service_specific_credentials(AllUsers=True, UserName=user)
    assert _code(err) == ("InvalidInput", 400)

"""A small organization in an in-process sandbox, and an approved plan to provision it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from bench.plans import store_provision_plan
from domain.access import AssignmentDefinition, PermissionSetDefinition, RequiredPolicy
from sandbox.control import SandboxControl
from sandbox.server import Sandbox
from sandbox.strict_settings import Strictness
from tasks.handler import PollPolicy

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
CUSTOMER_POLICY = {"name": "team-read", "path": "/iamc/"}
QUICK = PollPolicy(initial=0.005, maximum=0.05, timeout=30)
DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


@dataclass
class World:
    """The sandbox, its member accounts and identities, and how to reach them."""

    sandbox: Sandbox
    control: SandboxControl
    accounts: list[str]
    instance_arn: str
    identity_store_id: str
    users: dict[str, str]  # user name -> id
    groups: dict[str, str]  # display name -> id
    # One session and one client per service for the module: a new boto3 session parses
    # every service model again (~10 ms a file), which added up to seconds per test.
    _session: boto3.Session | None = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session().client(service, endpoint_url=self.sandbox.url)
        return self._clients[service]

    def member_iam(self, account_id: str) -> Any:
        return self.member_client(account_id, "iam")

    def member_session(self, account_id: str) -> boto3.Session:
        """A session in a member account, through its OrganizationAccountAccessRole."""
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test",
        )["Credentials"]
        return session_sharing_models(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )

    def member_client(self, account_id: str, service: str, region: str = "us-east-1") -> Any:
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test",
        )["Credentials"]
        return boto3.client(
            service,
            endpoint_url=self.sandbox.url,
            region_name=region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )


def session_sharing_models(**credentials: str) -> boto3.Session:
    """A boto3 session whose service models come from the process's one loader (the one
    AwsSessions uses): each new session otherwise parses every client's JSON model again."""
    import botocore.session

    from tasks.aws import shared_loader

    core = botocore.session.get_session()
    core.register_component("data_loader", shared_loader())
    return boto3.Session(botocore_session=core, **credentials)


def _build_world(sandbox: Sandbox) -> World:
    sandbox.reset(seed=3)
    world = World(sandbox, SandboxControl(sandbox.url), [], "", "", {}, {})
    org = world.client("organizations")
    org.create_organization(FeatureSet="ALL")
    for n in (1, 2):
        request = org.create_account(AccountName=f"member{n}", Email=f"m{n}@example.com")
        world.accounts.append(
            org.describe_create_account_status(
                CreateAccountRequestId=request["CreateAccountStatus"]["Id"]
            )["CreateAccountStatus"]["AccountId"]
        )
    instance = world.client("sso-admin").list_instances()["Instances"][0]
    world.instance_arn, world.identity_store_id = (
        instance["InstanceArn"],
        instance["IdentityStoreId"],
    )
    store = world.client("identitystore")
    for name in ("alice@example.com", "bob@example.com"):
        world.users[name] = store.create_user(
            IdentityStoreId=world.identity_store_id,
            UserName=name,
            DisplayName=name,
            Name={"GivenName": "A", "FamilyName": "B"},
        )["UserId"]
    world.groups["devs"] = store.create_group(
        IdentityStoreId=world.identity_store_id, DisplayName="devs"
    )["GroupId"]
    for account_id in world.accounts:
        world.member_iam(account_id).create_policy(
            PolicyName=CUSTOMER_POLICY["name"],
            Path=CUSTOMER_POLICY["path"],
            PolicyDocument=json.dumps(DOC),
        )
    return world


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with Sandbox(port=0) as sandbox:
        yield _build_world(sandbox)


def wipe_identity_center(world: World) -> None:
    """Forget every permission set, assignment and async request; reset strictness and calls."""
    from moto.ssoadmin.models import ssoadmin_backends

    backend = ssoadmin_backends["123456789012"]["us-east-1"]
    backend.permission_sets.clear()
    backend.account_assignments.clear()
    world.sandbox.middleware.reset_async()
    world.control.configure(**Strictness().to_dict())
    world.control.reset_calls()


@pytest.fixture
def clean(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The world with an empty Identity Center, and boto3 pointed at the sandbox."""
    wipe_identity_center(world)
    for key, value in world.sandbox.env().items():
        monkeypatch.setenv(key, value)
    return world


def permission_sets() -> list[PermissionSetDefinition]:
    return [
        PermissionSetDefinition(
            name="Admins",
            description="admin access of the devs group",
            fingerprint="f-admins",
            session_duration="PT2H",
            inline_policy={
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            },
        ),
        PermissionSetDefinition(
            name="Readers",
            description="read access",
            fingerprint="f-readers",
            session_duration="PT4H",
            inline_policy=DOC,
            aws_managed_policy_arns=[READ_ONLY],
            customer_managed_policies=[dict(CUSTOMER_POLICY)],
        ),
    ]


def assignments(world: World) -> list[AssignmentDefinition]:
    a1, a2 = world.accounts
    alice, bob = world.users["alice@example.com"], world.users["bob@example.com"]
    devs = world.groups["devs"]
    return [
        AssignmentDefinition(a1, "Readers", "USER", alice, "alice@example.com", "user alice"),
        AssignmentDefinition(a1, "Admins", "GROUP", devs, "devs", "group devs"),
        AssignmentDefinition(a2, "Readers", "USER", bob, "bob@example.com", "user bob"),
        AssignmentDefinition(a2, "Readers", "GROUP", devs, "devs", "group devs"),
    ]


def write_approved_plan(
    world: World,
    tmp_path: Path,
    *,
    approve: str | None = "provision",
    sets: list[PermissionSetDefinition] | None = None,
    extra_assignments: list[AssignmentDefinition] = (),
) -> tuple[Path, int]:
    """A spec, a state DB with a complete (empty) snapshot, and the plan, approved if asked."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    url = f"sqlite:///{tmp_path / 'state.db'}"
    sets = permission_sets() if sets is None else sets
    required = [
        RequiredPolicy(a, CUSTOMER_POLICY["name"], CUSTOMER_POLICY["path"])
        for a in sorted(world.accounts)
    ]
    plan_id = store_provision_plan(
        spec,
        url,
        "wave-1",
        sets,
        [*assignments(world), *extra_assignments],
        required,
        approve_stage=approve,
        approver="cab",
    )
    return spec, plan_id


def live_state(world: World) -> dict[str, Any]:
    """Every permission set (by name, with its policies) and assignment, ARNs left out."""
    from tasks.permission_sets import permission_set_names, read_permission_set

    sso = world.client("sso-admin")
    names = permission_set_names(sso, world.instance_arn)
    sets = {}
    for name, arn in sorted(names.items()):
        found = read_permission_set(sso, world.instance_arn, arn)
        found.pop("arn")
        sets[name] = found
    by_arn = {arn: name for name, arn in names.items()}
    assigned = sorted(
        (account_id, by_arn[arn], a["PrincipalType"], a["PrincipalId"])
        for account_id in world.accounts
        for arn in names.values()
        for a in sso.list_account_assignments(
            InstanceArn=world.instance_arn, AccountId=account_id, PermissionSetArn=arn
        )["AccountAssignments"]
    )
    return {"permission_sets": sets, "assignments": assigned}


def calls(world: World) -> Callable[[str], int]:
    counts = world.control.calls()["calls"]
    return lambda operation: counts.get(f"sso-admin:{operation}", 0)


@contextlib.contextmanager
def role_removed(world: World, account_id: str) -> Iterator[None]:
    """The member account's OrganizationAccountAccessRole deleted, as a person might, and put
    back as it was on exit: while it is gone, AssumeRole into the account is refused."""
    role = "OrganizationAccountAccessRole"
    iam = world.member_iam(account_id)  # assumed before the role goes: it stays usable
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    attached = [
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    ]
    inline = {
        name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }
    for arn in attached:
        iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    for name in inline:
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    iam.delete_role(RoleName=role)
    try:
        yield
    finally:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
        for arn in attached:
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        for name, document in inline.items():
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    return SimpleNamespace(
        QUICK=QUICK,
        DOC=DOC,
        READ_ONLY=READ_ONLY,
        permission_sets=permission_sets,
        assignments=assignments,
        write_approved_plan=write_approved_plan,
        live_state=live_state,
        calls=calls,
        role_removed=role_removed,
        wipe=wipe_identity_center,
        AssignmentDefinition=AssignmentDefinition,
        PermissionSetDefinition=PermissionSetDefinition,
    )


# -- retiring users: IAM users in the member accounts, a plan to disable and delete them --------


def seed_user(world: World, account_id: str, name: str, **what: Any) -> dict[str, Any]:
    """Create an IAM user with the credentials and attachments asked for.

    ``what``: keys (active access keys), inactive_keys, ssh, cert, service_credential,
    password, mfa, inline, managed, group, tags.
    """
    from sandbox.seed_iam_users import signing_certificate

    iam = world.member_iam(account_id)
    iam.create_user(
        UserName=name,
        Path="/people/",
        Tags=[{"Key": k, "Value": v} for k, v in (what.get("tags") or {}).items()],
    )
    made: dict[str, Any] = {"keys": [], "inactive_keys": []}
    for _ in range(what.get("keys", 1)):
        made["keys"].append(iam.create_access_key(UserName=name)["AccessKey"])
    for _ in range(what.get("inactive_keys", 0)):
        key = iam.create_access_key(UserName=name)["AccessKey"]
        iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
        made["inactive_keys"].append(key)
    if what.get("ssh"):
        blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))
        import base64

        body = f"ssh-ed25519 {base64.b64encode(blob).decode()} {name}@host"
        made["ssh"] = iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=body)[
            "SSHPublicKey"
        ]["SSHPublicKeyId"]
    if what.get("cert"):
        made["cert"] = iam.upload_signing_certificate(
            UserName=name, CertificateBody=signing_certificate()
        )["Certificate"]["CertificateId"]
    if what.get("service_credential"):
        made["service_credential"] = iam.create_service_specific_credential(
            UserName=name, ServiceName="codecommit.amazonaws.com"
        )["ServiceSpecificCredential"]["ServiceSpecificCredentialId"]
    if what.get("password"):
        iam.create_login_profile(UserName=name, Password="Sandbox-Passw0rd!x")
    if what.get("mfa"):
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
            "SerialNumber"
        ]
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        made["mfa"] = serial
    if what.get("inline"):
        iam.put_user_policy(UserName=name, PolicyName="own", PolicyDocument=json.dumps(DOC))
    if what.get("managed"):
        iam.attach_user_policy(
            UserName=name,
            PolicyArn=f"arn:aws:iam::{account_id}:policy{CUSTOMER_POLICY['path']}"
            f"{CUSTOMER_POLICY['name']}",
        )
    if what.get("group"):
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_group(GroupName=what["group"])
        iam.add_user_to_group(GroupName=what["group"], UserName=name)
    return made


def _spec(
    tmp_path: Path,
    bake_days: int,
    decommission: str = "",
    state: str = "sqlite:///state.db",
    more: str = "",
) -> Path:
    """``more``: more tables (e.g. ``[prefect]``)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wave-1"\nstate = "{state}"\n'
        f"[decommission]\nbake_days = {bake_days}\n{decommission}"
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
        f"{more}"
    )
    return spec


def _inventories(world: World, keep: Callable[[str, str], bool], now: Any = None) -> list[Any]:
    """Each member account inventoried now (or at ``now``), keeping the users ``keep`` names."""
    from domain.records import Account
    from tasks.iam_users import ClassificationRules, inventory_account

    inventories = []
    for account_id in world.accounts:
        session = world.member_session(account_id)
        found = inventory_account(session, Account(account_id), ClassificationRules(), now=now)
        found.users = [u for u in found.users if keep(account_id, u.name)]
        inventories.append(found)
    return inventories


def write_retire_plan(
    world: World,
    tmp_path: Path,
    prefix: str,
    *,
    approve: tuple[str, ...] = ("all", "delete"),
    bake_days: int = 14,
    decommission: str = "",
    extra_findings: list[Any] | None = None,
) -> tuple[Path, int]:
    """A spec and an approved plan that retires every IAM user whose name starts with prefix.

    The inventory is taken as if a year had passed, so every such user is unused (retire).
    ``approve``: the stages approved, one decision each (delete on its own, quoting its
    number of users); ``decommission``: more ``[decommission]`` lines (the delete caps).
    """
    from datetime import UTC, datetime, timedelta

    from bench.plans import store_retire_plan

    spec = _spec(tmp_path, bake_days, decommission)
    later = datetime.now(UTC) + timedelta(days=365)
    plan_id = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        _inventories(world, lambda _, name: name.startswith(prefix), now=later),
        approve_stages=approve,
        approver="cab",
        bake_days=bake_days,
        extra_findings=extra_findings,
    )
    return spec, plan_id


def write_migrate_plan(
    world: World,
    tmp_path: Path,
    people: list[tuple[str, str, str]],
    *,
    bake_days: int = 14,
    state: str | None = None,
    more: str = "",
) -> tuple[Path, int]:
    """A spec and a plan migrating IAM users to identity-store users, approved for provision,
    disable and (on its own, quoting its number of users) delete.

    ``people``: (account id, IAM user, identity-store user name); each person gets the Readers
    permission set (without its customer-managed policy) in their account. ``state``: the
    state DB's URL (default: ``state.db`` beside the spec); ``more``: more spec tables.
    """
    from bench.plans import store_retire_plan
    from domain.access import SynthesisResult
    from domain.records import MatchStatus, UserMapping

    readers = next(s for s in permission_sets() if s.name == "Readers")
    readers.customer_managed_policies = []
    wanted = {(account_id, user) for account_id, user, _ in people}
    assignments_ = [
        AssignmentDefinition(account, "Readers", "USER", world.users[identity], identity, identity)
        for account, identity in sorted({(a, i) for a, _, i in people})
    ]
    spec = _spec(tmp_path, bake_days, state=state or "sqlite:///state.db", more=more)
    plan_id = store_retire_plan(
        spec,
        state or f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        _inventories(world, lambda account_id, name: (account_id, name) in wanted),
        approve_stages=("provision", "disable", "delete"),
        approver="cab",
        bake_days=bake_days,
        user_mappings=[
            UserMapping(account_id, user, MatchStatus.MATCHED, "override", world.users[i], i)
            for account_id, user, i in people
        ],
        synthesis=SynthesisResult(permission_sets=[readers], assignments=assignments_),
    )
    return spec, plan_id


def iam_state(world: World, prefix: str) -> dict[str, Any]:
    """Every IAM user whose name starts with prefix, as comparable data (no dates, no ids
    that a re-creation would change)."""
    state: dict[str, Any] = {}
    for account_id in world.accounts:
        iam = world.member_iam(account_id)
        for user in iam.list_users()["Users"]:
            name = user["UserName"]
            if not name.startswith(prefix):
                continue
            try:
                iam.get_login_profile(UserName=name)
                console = True
            except iam.exceptions.NoSuchEntityException:
                console = False
            state[f"{account_id}/{name}"] = {
                "keys": sorted(
                    (k["AccessKeyId"], k["Status"])
                    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
                ),
                "ssh": sorted(
                    (k["SSHPublicKeyId"], k["Status"])
                    for k in iam.list_ssh_public_keys(UserName=name)["SSHPublicKeys"]
                ),
                "certs": sorted(
                    (c["CertificateId"], c["Status"])
                    for c in iam.list_signing_certificates(UserName=name)["Certificates"]
                ),
                "service": sorted(
                    (c["ServiceSpecificCredentialId"], c["Status"])
                    for c in iam.list_service_specific_credentials(UserName=name)[
                        "ServiceSpecificCredentials"
                    ]
                ),
                "inline": sorted(iam.list_user_policies(UserName=name)["PolicyNames"]),
                "attached": sorted(
                    p["PolicyArn"]
                    for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
                ),
                "groups": sorted(
                    g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]
                ),
                "mfa": sorted(
                    d["SerialNumber"] for d in iam.list_mfa_devices(UserName=name)["MFADevices"]
                ),
                "console": console,
            }
    return state


GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"


def export_plans(
    world: World,
    tmp_path: Path,
    prefix: str,
    boundaries: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> tuple[Path, int, int]:
    """A provision plan (two sets, four assignments) and a retire plan with workload roles:
    four workload users in two accounts (Lambda, EC2, two GitHub Actions), account 2's GitHub
    OIDC provider already there (adopted), account 1's made by the replace stage. With
    ``boundaries`` (Readers', the other set's), the sets have permissions boundaries and the
    workload roles Readers' one."""
    from bench.plans import store_retire_plan
    from domain.records import Account
    from domain.workloads import Confidence, Placement, Runtime
    from tasks.iam_users import ClassificationRules, inventory_account

    sets = permission_sets()
    for definition in sets if boundaries else []:
        definition.permissions_boundary = boundaries[0 if definition.name == "Readers" else 1]
    spec, provision = write_approved_plan(world, tmp_path, approve="all", sets=sets)
    a1, a2 = world.accounts
    for account_id in world.accounts:
        iam = world.member_iam(account_id)
        for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            if p["Arn"].endswith(GITHUB_OIDC_HOST):
                iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"])
    world.member_iam(a2).create_open_id_connect_provider(
        Url=f"https://{GITHUB_OIDC_HOST}",
        ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["a" * 40],
    )
    seed_user(world, a1, f"{prefix}fn", keys=1, inline=True, managed=True)
    seed_user(world, a1, f"{prefix}box", keys=1)
    seed_user(world, a1, f"{prefix}ci", keys=1)
    seed_user(world, a2, f"{prefix}deploy", keys=1, inline=True)
    high = Confidence.HIGH
    found = [
        Placement(a1, f"{prefix}fn", Runtime.LAMBDA, high),
        Placement(a1, f"{prefix}box", Runtime.EC2, high),
        Placement(a1, f"{prefix}ci", Runtime.GITHUB_ACTIONS, high, repository="acme/app"),
        Placement(a2, f"{prefix}deploy", Runtime.GITHUB_ACTIONS, high, repository="acme/infra"),
    ]
    inventories = []
    for account_id in world.accounts:
        inventory = inventory_account(
            world.member_session(account_id), Account(account_id), ClassificationRules()
        )
        inventory.users = [u for u in inventory.users if u.name.startswith(prefix)]
        inventories.append(inventory)
    retire = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        inventories,
        approve_stages=("all",),
        approver="cab",
        workloads={p.key: p for p in found},
        settings={"permissions_boundary": boundaries[0]} if boundaries else None,
    )
    return spec, provision, retire


SET_TAGS = {"owner": "platform", "cost-centre": "42"}


def tag_permission_set(world: World, name: str) -> None:
    """Tag one permission set live (``SET_TAGS``), as a team might after the migration."""
    sso, instance = world.client("sso-admin"), world.instance_arn
    for arn in sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]:
        ps = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)
        if ps["PermissionSet"]["Name"] == name:
            tags = [{"Key": k, "Value": v} for k, v in SET_TAGS.items()]
            sso.tag_resource(InstanceArn=instance, ResourceArn=arn, Tags=tags)
            return
    raise AssertionError(f"no permission set {name}")


@pytest.fixture
def retire_kit(kit: SimpleNamespace) -> SimpleNamespace:
    """Helpers for the disable, bake, delete and restore tests."""
    return SimpleNamespace(
        **vars(kit),
        seed_user=seed_user,
        write_retire_plan=write_retire_plan,
        write_migrate_plan=write_migrate_plan,
        iam_state=iam_state,
        export_plans=export_plans,
        tag_permission_set=tag_permission_set,
    )


def lambda_holding_key(iam: Any, lambda_client: Any, key: dict[str, str]) -> None:
    """A Lambda function ``uploader`` with the access key (id and secret) in its environment,
    where the key scan's AWS side finds it."""
    import io
    import zipfile

    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("handler.py", "def handler(e, c):\n    return {}\n")
    lambda_client.create_function(
        FunctionName="uploader",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": bundle.getvalue()},
        Environment={
            "Variables": {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            }
        },
    )

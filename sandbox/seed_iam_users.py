"""The IAM users of every kind in a member account, with their credentials, groups and policies."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from domain.errors import SandboxError
from sandbox.seed_context import Seeding
from sandbox.seed_identity_center import AMBIGUOUS_IAM_USER, UNMATCHED_HUMAN, Person
from sandbox.seed_manifest import (
    PROTECTED_TAG,
    SeededAccount,
    SeededUser,
    SeedManifest,
    expected_class,
)

# Users whose access keys are seeded into workload configuration and the sample repository.
WORKLOAD_KINDS = ("workload", "workload-two-keys", "workload-policies")

# The kinds of IAM user each member account cycles through, in this order. The order puts the
# special kinds early so that the first account holds every one of them whenever M >= 10.
KIND_CYCLE: tuple[str, ...] = (
    "breakglass",
    "console-mfa",
    "console-no-mfa",
    "workload",
    "workload-two-keys",
    "stale",
    "no-credentials",
    "protected-tag",
    "ssh-key",
    "signing-cert",
    "group-member",
    "workload-policies",
)
HUMAN_KINDS = frozenset({"console-mfa", "console-no-mfa", "group-member", "stale"})

# Names of non-human users, per kind; a later cycle appends "-2", "-3", ...
_SERVICE_NAMES: dict[str, tuple[str, ...]] = {
    "workload": ("ci-deployer", "metrics-exporter", "backup-agent", "log-shipper"),
    "workload-two-keys": ("terraform-runner", "jenkins", "datadog-integration"),
    "workload-policies": ("etl-loader", "report-generator", "media-transcoder"),
    "no-credentials": ("onboarding-test", "old-app-user", "placeholder-svc"),
    "protected-tag": ("svc-payments-legacy", "svc-mainframe-bridge"),
    "ssh-key": ("sftp-ingest", "git-mirror"),
    "signing-cert": ("soap-signer", "ec2-bundle-signer"),
}

_ALLOW_S3_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
    ],
}
_DENY_BILLING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": ["aws-portal:*", "billing:*"], "Resource": "*"}],
}


def seed_account_users(
    seeding: Seeding,
    manifest: SeedManifest,
    account: SeededAccount,
    count: int,
    people: list[Person],
    first: bool,
) -> None:
    """The account's groups and customer policy, then ``count`` users cycling KIND_CYCLE."""
    iam = seeding.member_client(account.account_id, "iam")
    customer_policy_arn = _create_groups(iam)
    pool = list(people)
    seeding.rng.shuffle(pool)
    specials: list[Person | str] = []
    if first:
        # The unmatched and the ambiguous human live in the first account's first two
        # human slots (console-mfa, console-no-mfa).
        specials = [AMBIGUOUS_IAM_USER, Person(*UNMATCHED_HUMAN)]
    used_names: Counter[str] = Counter()
    dates: dict[str, dict[str, Any]] = {}
    for index in range(count):
        kind = KIND_CYCLE[index % len(KIND_CYCLE)]
        round_ = index // len(KIND_CYCLE)
        person: Person | str | None = None
        if kind in HUMAN_KINDS:
            if specials and kind in ("console-mfa", "console-no-mfa"):
                person = specials.pop(0)
            else:
                person = pool.pop()
            name = person if isinstance(person, str) else person.login
        elif kind == "breakglass":
            name = "breakglass-admin" if round_ == 0 else f"breakglass-admin-{round_ + 1}"
        else:
            options = _SERVICE_NAMES[kind]
            base = options[(round_ + manifest.accounts.index(account)) % len(options)]
            used_names[base] += 1
            name = base if used_names[base] == 1 else f"{base}-{used_names[base]}"
        user, user_dates = _create_user(
            seeding, iam, account, name, kind, person, customer_policy_arn, manifest
        )
        account.users.append(user)
        dates[name] = user_dates
    _backdate(seeding, account.account_id, dates)


def _create_groups(iam: Any) -> str:
    """The account's groups with their policies; returns the customer-managed policy's ARN."""
    customer_policy_arn = iam.create_policy(
        PolicyName="acme-app-s3-access",
        PolicyDocument=json.dumps(_ALLOW_S3_READ),
        Description="Customer-managed: read the app buckets",
    )["Policy"]["Arn"]
    aws_policy = "arn:aws:iam::aws:policy/{}".format
    iam.create_group(GroupName="developers")
    iam.attach_group_policy(GroupName="developers", PolicyArn=aws_policy("ReadOnlyAccess"))
    iam.put_group_policy(
        GroupName="developers",
        PolicyName="deny-billing",
        PolicyDocument=json.dumps(_DENY_BILLING),
    )
    iam.create_group(GroupName="platform-admins")
    iam.attach_group_policy(
        GroupName="platform-admins", PolicyArn=aws_policy("AdministratorAccess")
    )
    iam.create_group(GroupName="auditors")
    iam.attach_group_policy(GroupName="auditors", PolicyArn=aws_policy("SecurityAudit"))
    iam.attach_group_policy(GroupName="auditors", PolicyArn=customer_policy_arn)
    return customer_policy_arn


def _create_user(
    seeding: Seeding,
    iam: Any,
    account: SeededAccount,
    name: str,
    kind: str,
    person: Person | str | None,
    customer_policy_arn: str,
    manifest: SeedManifest,
) -> tuple[SeededUser, dict[str, Any]]:
    """One user of ``kind``; returns it with its class, and the dates to write into moto."""
    rng, now = seeding.rng, seeding.now
    tags, email, note = _tags_and_note(seeding, kind, person, manifest)
    iam.create_user(UserName=name, Tags=tags)

    recent = now - timedelta(days=rng.randint(0, 4), hours=rng.randint(1, 20))
    old = now - timedelta(days=rng.randint(210, 400))
    created = now - timedelta(days=rng.randint(200, 900))
    plan: dict[str, Any] = {"created": created, "password_last_used": None, "keys": []}
    has_password, has_mfa, has_other = _sign_in_and_keys(
        seeding, iam, account, name, kind, manifest, plan, recent, old
    )
    gave_other = _kind_specifics(seeding, iam, name, kind, customer_policy_arn, plan, old)
    has_other = has_other or gave_other

    key_uses = [used for _, used in plan["keys"]]
    last = max([d for d in [plan["password_last_used"], *key_uses] if d], default=None)
    cls = expected_class(
        name,
        {t["Key"]: t["Value"] for t in tags},
        has_password=has_password,
        has_mfa=has_mfa,
        has_other_credentials=has_other,
        last_activity=last,
        created=plan["created"],
        now=now,
    )
    return SeededUser(name, kind, cls, email, note), plan


def _tags_and_note(
    seeding: Seeding, kind: str, person: Person | str | None, manifest: SeedManifest
) -> tuple[list[dict[str, str]], str | None, str]:
    """The user's tags, the person's email (humans) and the manifest's note on the user."""
    tags = [{"Key": "team", "Value": seeding.rng.choice(("platform", "data", "app", "sec"))}]
    email = None
    note = ""
    if isinstance(person, Person):
        email = person.email
        tags.append({"Key": "email", "Value": email})
        if person.login == manifest.unmatched_humans[0]:
            note = "unmatched: no identity-store user"
    elif isinstance(person, str):
        note = "ambiguous: two identity-store users named Alex Kim, no email tag"
    if kind == "protected-tag":
        tags.append({"Key": PROTECTED_TAG[0], "Value": PROTECTED_TAG[1]})
    return tags, email, note


def _sign_in_and_keys(
    seeding: Seeding,
    iam: Any,
    account: SeededAccount,
    name: str,
    kind: str,
    manifest: SeedManifest,
    plan: dict[str, Any],
    recent: datetime,
    old: datetime,
) -> tuple[bool, bool, bool]:
    """Console password, MFA device and access keys as the kind has them; returns whether
    the user got a password, an MFA device, another credential."""
    has_password = has_mfa = has_other = False
    if kind in ("console-mfa", "console-no-mfa", "group-member", "stale", "breakglass"):
        iam.create_login_profile(UserName=name, Password=_password(seeding))
        has_password = True
        plan["password_last_used"] = recent
    if kind in ("console-mfa", "breakglass"):
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
            "SerialNumber"
        ]
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        has_mfa = True
    if kind in ("workload", "workload-two-keys", "workload-policies", "protected-tag", "stale"):
        if kind == "workload-two-keys":
            # The rotated-out key: kept, inactive, last used long ago.
            old_key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
            iam.update_access_key(UserName=name, AccessKeyId=old_key, Status="Inactive")
            plan["keys"].append((old_key, old))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        plan["keys"].append((key["AccessKeyId"], recent))
        has_other = True
        if kind in WORKLOAD_KINDS:
            seeding.workload_keys.append((account.account_id, name, key["AccessKeyId"]))
        if kind == "workload" and manifest.sample_key_id is None:
            manifest.sample_key_id = key["AccessKeyId"]
            manifest.sample_key_user = name
            manifest.sample_key_account = account.account_id
            seeding.sample_secret = key["SecretAccessKey"]
    return has_password, has_mfa, has_other


def _kind_specifics(
    seeding: Seeding,
    iam: Any,
    name: str,
    kind: str,
    customer_policy_arn: str,
    plan: dict[str, Any],
    old: datetime,
) -> bool:
    """What sets the kind apart: its groups, policies, SSH key or certificate, and its dates;
    returns whether it gave the user a credential (SSH key, signing certificate)."""
    rng, now = seeding.rng, seeding.now
    if kind == "breakglass":
        iam.attach_user_policy(
            UserName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
        )
        plan["password_last_used"] = None  # break-glass: never used
    elif kind == "console-mfa":
        iam.add_user_to_group(UserName=name, GroupName="platform-admins")
    elif kind == "console-no-mfa":
        iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    elif kind == "group-member":
        iam.add_user_to_group(UserName=name, GroupName="developers")
        iam.add_user_to_group(UserName=name, GroupName="auditors")
    elif kind == "workload":
        iam.put_user_policy(
            UserName=name,
            PolicyName="s3-read",
            PolicyDocument=json.dumps(_ALLOW_S3_READ),
        )
    elif kind == "workload-policies":
        iam.put_user_policy(
            UserName=name, PolicyName="deny-billing", PolicyDocument=json.dumps(_DENY_BILLING)
        )
        iam.attach_user_policy(
            UserName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
        )
        iam.attach_user_policy(UserName=name, PolicyArn=customer_policy_arn)
    elif kind == "stale":
        # Left the company long ago: created, last signed in and last used a key > 200 days.
        iam.add_user_to_group(UserName=name, GroupName="developers")
        plan["created"] = now - timedelta(days=rng.randint(400, 800))
        plan["password_last_used"] = old
        plan["keys"] = [(key_id, old) for key_id, _ in plan["keys"]]
    elif kind == "no-credentials":
        plan["created"] = now - timedelta(days=rng.randint(100, 500))
    elif kind == "ssh-key":
        iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=_ssh_key(seeding, name))
        # No password or access key: the creation date is its last activity, so recent.
        plan["created"] = now - timedelta(days=rng.randint(10, 60))
        return True
    elif kind == "signing-cert":
        iam.upload_signing_certificate(UserName=name, CertificateBody=signing_certificate())
        plan["created"] = now - timedelta(days=rng.randint(10, 60))
        return True
    return False


def _password(seeding: Seeding) -> str:
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(seeding.rng.choice(alphabet) for _ in range(20)) + "!9a"


def _ssh_key(seeding: Seeding, name: str) -> str:
    # ssh-ed25519 wire format: string "ssh-ed25519", string <32-byte key>.
    key_type = b"ssh-ed25519"
    raw = bytes(seeding.rng.getrandbits(8) for _ in range(32))
    blob = len(key_type).to_bytes(4, "big") + key_type + len(raw).to_bytes(4, "big") + raw
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {name}@build-host"


def _backdate(seeding: Seeding, account_id: str, dates: dict[str, dict[str, Any]]) -> None:
    """Write creation and last-used dates into moto, which the API cannot set.

    AWS sets them only from real sign-ins and requests, and moto stamps "now" on everything,
    so they go straight into moto's backends: the seeding runs in the process that hosts the
    sandbox.
    """
    # Imported here: moto is slow to import, and only seeding needs its IAM models.
    from moto.iam.models import AccessKeyLastUsed, iam_backends
    from moto.utilities.utils import get_partition

    backend = iam_backends[account_id][get_partition(seeding.region)]
    for name, plan in dates.items():
        user = backend.users.get(name)
        if user is None:
            raise SandboxError(
                f"user {name} is not in this process's moto: seed from the sandbox's process"
            )
        # moto keeps naive UTC datetimes (moto.core.utils.utcnow).
        user.create_date = _naive(plan["created"])
        if plan["password_last_used"] is not None:
            user.password_last_used = _naive(plan["password_last_used"])
        used_by_key = dict(plan["keys"])
        for key in user.access_keys:
            key.create_date = _naive(plan["created"] + timedelta(days=1))
            used = used_by_key.get(key.access_key_id)
            if used is not None:
                key.last_used = AccessKeyLastUsed(
                    timestamp=_naive(used), service="s3", region=seeding.region
                )
        for device in user.mfa_devices.values():
            device.enable_date = _naive(plan["created"] + timedelta(days=1))


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


@lru_cache(maxsize=1)
def signing_certificate() -> str:
    """A self-signed X.509 certificate (moto parses the PEM), made once per process."""
    # Imported here: cryptography is needed only by the one kind of user that has a certificate.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(0x1A2B3C4D5E6F, ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iamc-sandbox-signer")])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1001)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()

"""The demo's migration spec for a seeded sandbox organization, and its waves."""

from __future__ import annotations

from datetime import date, timedelta

from sandbox.seed_manifest import SeedManifest
from sandbox.seed_samples import SAMPLES_REPOSITORY
from sandbox.workload_usage import VENDOR_ACCOUNTS, base_name

DEMO_SPEC = """# The demo's migration spec: a sandbox organization on a local moto server.
name = "demo"
region = "us-east-1"
member_role = "OrganizationAccountAccessRole"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[scope]
include_accounts = ["*"]
[decommission]
inactive_days = 90
bake_days = 14
max_deletes_per_run = 50      # the blast-radius cap: a delete run over it stops before deleting
max_deletes_per_account = 20
[inventory]
concurrency = 8
[least_privilege]
window_days = 90
mode = "trim"                 # each person's set keeps only the services they used
"""


def demo_waves(accounts: list[str]) -> str:
    """The spec's [[waves]]: the first half of the active accounts, then the rest."""
    half = max(1, len(accounts) // 2)
    lines = []
    for n, chunk in enumerate((accounts[:half], accounts[half:]), start=1):
        if chunk:
            ids = ", ".join(f'"{a}"' for a in chunk)
            lines += ["[[waves]]", f'name = "wave-{n}"', f"include_accounts = [{ids}]"]
    return "\n".join(lines) + "\n"


# What the owners of the demo's non-person users declared (CIS 1.21 evidence, ``[cis]``):
# break-glass and legacy protected users are documented exceptions; the users whose only
# credential is an SSH key or a signing certificate are services, declared by their owners.
_EXCEPTION_REASONS = {
    "breakglass": (
        "security-oncall",
        "break-glass administrator for when Identity Center is down; hardware MFA, sealed",
    ),
    "protected-tag": (
        "payments-platform",
        "legacy integration that cannot assume roles until its 2027 rewrite",
    ),
}
_SERVICE_KINDS = {"ssh-key": "platform-team", "signing-cert": "platform-team"}


def demo_cis(manifest: SeedManifest, today: date) -> str:
    """The spec's ``[cis]`` documentation of the seeded organization's non-person users."""
    expires = (today + timedelta(days=180)).isoformat()
    lines = ["[cis]", "identity_accounts = []"]
    for account in manifest.accounts:
        if account.status != "ACTIVE":
            continue
        for user in account.users:
            if user.kind in _SERVICE_KINDS:
                lines += [
                    "[[cis.service_users]]",
                    f'account = "{account.account_id}"',
                    f'user = "{user.name}"',
                    f'owner = "{_SERVICE_KINDS[user.kind]}"',
                ]
            elif user.kind in _EXCEPTION_REASONS:
                owner, reason = _EXCEPTION_REASONS[user.kind]
                lines += [
                    "[[cis.exceptions]]",
                    f'account = "{account.account_id}"',
                    f'user = "{user.name}"',
                    f'owner = "{owner}"',
                    f'reason = "{reason}"',
                    f"expires = {expires}",
                ]
    return "\n".join(lines) + "\n"


# What the owners declared of the workloads the evidence can't finish placing (``[[workloads]]``):
# the repository a GitHub OIDC role is pinned to, the vendor's account and ExternalId, the
# on-premises host's Roles Anywhere trust anchor. The others are placed from CloudTrail alone.
_DECLARED = {
    "ci-deployer": ("github-actions", "app-team", {"repository": SAMPLES_REPOSITORY}),
    "terraform-runner": ("terraform", "platform-team", {"repository": "acme/infrastructure"}),
    "datadog-integration": (
        "vendor",
        "observability-team",
        {"vendor_account": VENDOR_ACCOUNTS["datadog"], "external_id": "acme-datadog-{account}"},
    ),
    "jenkins": (
        "on-premises",
        "build-team",
        {
            "trust_anchor_arn": "arn:aws:rolesanywhere:us-east-1:{account}:trust-anchor/"
            "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
        },
    ),
}


def demo_workloads(manifest: SeedManifest) -> str:
    """The spec's ``[[workloads]]``: what the owners of four kinds of workload declared."""
    lines: list[str] = []
    for account in manifest.accounts:
        if account.status != "ACTIVE":
            continue
        for user in account.users:
            declared = _DECLARED.get(base_name(user.name))
            if declared is None:
                continue
            runtime, owner, fields = declared
            lines += [
                "[[workloads]]",
                f'account = "{account.account_id}"',
                f'user = "{user.name}"',
                f'runtime = "{runtime}"',
                f'owner = "{owner}"',
            ]
            lines += [
                f'{name} = "{value.format(account=account.account_id)}"'
                for name, value in fields.items()
            ]
    return "\n".join(lines) + "\n" if lines else ""

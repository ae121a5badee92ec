"""The demo's migration spec for a seeded sandbox organization, and its waves."""

from __future__ import annotations

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

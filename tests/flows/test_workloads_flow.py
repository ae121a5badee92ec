"""The workloads flow on the sandbox: a key signed with a Lambda agent is placed in Lambda, and
an account whose member role is gone is contained (its task Failed, the run says which)."""

from __future__ import annotations

import uuid

import boto3
from botocore.config import Config

from domain.workloads import Confidence, Runtime
from flows.inventory import run_inventory
from flows.key_scan import run_key_scan
from flows.workloads import run_workloads
from state import Store


def _sign_as_lambda(url: str, account_id: str, key_id: str, times: int) -> None:
    from moto.iam.models import iam_backends

    # The sandbox runs in this process: its moto backend knows the seeded secret.
    secret = iam_backends[account_id]["aws"].access_keys[key_id].secret_access_key
    client = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(user_agent_extra="exec-env/AWS_Lambda_python3.12"),
    )
    for _ in range(times):
        client.list_users()


def test_a_lambda_key_is_placed_and_an_unreachable_account_is_contained(clean, kit, tmp_path):

    world = clean
    first, second = world.accounts
    name = f"wl{uuid.uuid4().hex[:6]}"
    made = {}
    iam = world.member_iam(first)
    iam.create_user(UserName=name)
    made[first] = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    other = world.member_iam(second)
    other.create_user(UserName=name)
    other.create_access_key(UserName=name)
    _sign_as_lambda(world.sandbox.url, first, made[first], 3)

    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "wl-{name}"\nstate = "sqlite:///state.db"\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n"
    )
    run_inventory(spec)
    with kit.role_removed(world, second):
        result = run_workloads(str(spec))
    summary = result if isinstance(result, dict) else result.data
    assert second in summary["accounts_failed"], summary
    assert "AssumeRole" in summary["accounts_failed"][second]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.find_migration(f"wl-{name}")
        latest = store.workloads.latest(migration_id)
        placement = latest[(first, name)]
        assert placement.runtime == Runtime.LAMBDA, placement.evidence
        assert placement.confidence == Confidence.HIGH
        assert placement.non_interactive and placement.keys[0].events == 3
        assert placement.evidence[0].startswith("exec-env/AWS_Lambda_python3.12 on 3 of 3")
        assert (second, name) not in latest
        run = next(r for r in store.runs.list_runs(migration_id) if r.kind == "workloads")
        assert run.status == "succeeded" and "INCOMPLETE" in (run.error or "")


def test_a_key_in_a_github_workflow_is_pinned_to_the_clones_origin(clean, kit, tmp_path):
    """The key scan finds the key in ``.github/workflows/`` of a clone; the GitHub OIDC role
    is pinned to the repository the clone's ``origin`` names, whatever its path here."""
    import subprocess

    world = clean
    first, _ = world.accounts
    name = f"gh{uuid.uuid4().hex[:6]}"
    iam = world.member_iam(first)
    iam.create_user(UserName=name)
    key_id = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    clone = tmp_path / "checkouts" / "whatever-name"
    (clone / ".github" / "workflows").mkdir(parents=True)
    (clone / ".github" / "workflows" / "deploy.yml").write_text(
        f"env:\n  AWS_ACCESS_KEY_ID: {key_id}\n"
    )
    for args in (
        ["init", "-q"],
        ["remote", "add", "origin", "https://github.com/acme/web.git"],
        ["add", "."],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "deploy"],
    ):
        subprocess.run(["git", "-C", str(clone), *args], check=True)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "gh-{name}"\nstate = "sqlite:///state.db"\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n"
        '[scan]\npaths = ["checkouts/whatever-name"]\naws = false\n'
    )
    run_inventory(spec)
    run_key_scan(spec)
    run_workloads(str(spec))
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.find_migration(f"gh-{name}")
        placement = store.workloads.latest(migration_id)[(first, name)]
    assert placement.runtime == Runtime.GITHUB_ACTIONS, placement.evidence
    assert placement.repository == "acme/web"
    assert any(".github/workflows/deploy.yml" in w for k in placement.keys for w in k.written_down)

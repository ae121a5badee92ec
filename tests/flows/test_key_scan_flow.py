"""The key-scan flow against in-process moto: every classification, units, problems, no secret."""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import create_engine, text

from domain.key_attribution import Classification
from flows.inventory import run_inventory
from flows.key_scan import run_key_scan
from state import Store
from tasks.aws import AwsSessions
from tests.flows.conftest import lambda_holding_key

# A stranger's key id in the new format, of an account that is not in the organization.
STRANGER_ACCOUNT = "210987654321"
SECRET_OF = "wXq8Zr2Lk9Tf4Hm7Pj3Vb6Nc1Ds5Ga0Ye/Ku+Ri8Q"  # made up; 40 secret characters


def _key_of_account(account_id: str) -> str:
    from moto.iam.utils import generate_access_key_id_from_account_id

    return generate_access_key_id_from_account_id(account_id, "AKIA")


@pytest.fixture
def org(aws, tmp_path):
    """alpha (in scope) with users, beta (excluded from scope) with a key, and a code tree."""
    sessions = AwsSessions(region="us-east-1")
    organizations = sessions.management().client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    alpha, beta = (
        organizations.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        for name in ("alpha", "beta")
    )
    iam = sessions.for_account(alpha).client("iam")
    keys = {}
    for user in ("deployer", "reporter", "retired", "human"):
        iam.create_user(UserName=user)
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    iam.create_login_profile(UserName="human", Password="Sandbox-Only-1!")
    iam.update_access_key(
        UserName="reporter", AccessKeyId=keys["reporter"]["AccessKeyId"], Status="Inactive"
    )
    beta_iam = sessions.for_account(beta).client("iam")
    beta_iam.create_user(UserName="outsider")
    beta_key = beta_iam.create_access_key(UserName="outsider")["AccessKey"]["AccessKeyId"]

    lambda_holding_key(iam, sessions.for_account(alpha).client("lambda"), keys["deployer"])
    stranger = _key_of_account(STRANGER_ACCOUNT)
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(
        f'KEY = "{keys["deployer"]["AccessKeyId"]}"\n'
        f'SECRET = "{keys["deployer"]["SecretAccessKey"]}"\n'
        f'OLD = "{keys["reporter"]["AccessKeyId"]}"\n'
        f'GONE = "{keys["retired"]["AccessKeyId"]}"\n'
        f'THEIRS = "{beta_key}"\n'
        f'STRANGER = "{stranger}"\n'
        'DOCS = "AKIAIOSFODNN7EXAMPLE"\n'
    )
    # The deployer's secret alone, elsewhere: attributed through the same HMAC.
    (code / ".env").write_text(f"aws_secret_access_key={keys['deployer']['SecretAccessKey']}\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        f'[scope]\nexclude_accounts = ["{beta}"]\n'
        '[scan]\npaths = ["code", "missing-repo"]\n'
    )
    return {
        "alpha": alpha,
        "beta": beta,
        "keys": keys,
        "beta_key": beta_key,
        "stranger": stranger,
        "spec": spec,
        "iam": iam,
        "secrets": [k["SecretAccessKey"] for k in keys.values()],
    }


def test_scan_classifies_every_kind_of_key_and_stores_no_secret(org, tmp_path):
    run_inventory(org["spec"])
    org["iam"].delete_access_key(
        UserName="retired", AccessKeyId=org["keys"]["retired"]["AccessKeyId"]
    )
    run_inventory(org["spec"])

    summary = run_key_scan(org["spec"])

    assert summary["accounts"] == 1 and summary["accounts_failed"] == []
    assert summary["paths"] == 2 and summary["skipped"] == 1
    assert any("scan.paths[1]: 'missing-repo' does not exist" in p for p in summary["problems"])
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as store:
        findings = store.scans.key_scan_findings(summary["run_id"])
        units = {u.unit: u.status for u in store.scans.key_scan_units(summary["run_id"])}
    by_key = {}
    for finding in findings:
        by_key.setdefault(finding.key_id, set()).add(
            (finding.classification, finding.source, finding.owner_user)
        )
    keys = org["keys"]
    deployer = keys["deployer"]["AccessKeyId"]
    assert by_key[deployer] == {
        (Classification.ORG_KEY_ACTIVE, "working-tree", "deployer"),
        (Classification.ORG_KEY_ACTIVE, "lambda", "deployer"),
    }
    assert by_key[keys["reporter"]["AccessKeyId"]] == {
        (Classification.ORG_KEY_INACTIVE, "working-tree", "reporter")
    }
    assert by_key[keys["retired"]["AccessKeyId"]] == {
        (Classification.ORG_KEY_DELETED, "working-tree", "retired")
    }
    (out_of_scope,) = [f for f in findings if f.key_id == org["beta_key"]]
    assert out_of_scope.classification == Classification.OUT_OF_SCOPE_ACCOUNT
    assert out_of_scope.owner_account_id == org["beta"]
    (stranger,) = [f for f in findings if f.key_id == org["stranger"]]
    assert stranger.classification == Classification.UNATTRIBUTED
    assert STRANGER_ACCOUNT in stranger.note
    ignored = [f for f in findings if f.classification == Classification.IGNORED]
    assert any("aws-documentation-example" in f.note for f in ignored)
    assert all(f.key_id is None for f in ignored)
    # The secret alone in .env is the deployer's: the same HMAC as next to its key id.
    (env,) = [f for f in findings if f.location.startswith(".env")]
    assert env.key_id == deployer and env.pair_found
    lambda_hit = next(f for f in findings if f.source == "lambda")
    assert lambda_hit.pair_found and lambda_hit.found_in_account == org["alpha"]
    assert units["code:code"] == "scanned" and units["code:missing-repo"] == "skipped"
    assert units[f"aws:{org['alpha']}:lambda:us-east-1"] == "scanned"

    # No secret anywhere in the state DB (the key ids are whole there: that is their place).
    engine = create_engine(url)
    with engine.connect() as connection:
        dump = "\n".join(
            str(row)
            for table in ("key_scan_findings", "key_scan_problems", "runs", "findings")
            for row in connection.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        )
    engine.dispose()
    for secret in org["secrets"]:
        assert secret not in dump
    assert SECRET_OF not in dump


def test_a_later_scan_replaces_only_what_it_read(org, tmp_path):
    run_inventory(org["spec"])
    first = run_key_scan(org["spec"])
    deployer = org["keys"]["deployer"]["AccessKeyId"]
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as store:
        migration = store.migrations.find_migration("wave-1")
        current, never = store.scans.current_key_findings(migration)
        assert {f.source for f in current if f.key_id == deployer} == {"working-tree", "lambda"}
        assert never == ["code:missing-repo"]

    # The key leaves the code; the Lambda source can't be read this time (a gap).
    (tmp_path / "code" / "app.py").write_text("KEY = None\n")
    (tmp_path / "code" / ".env").unlink()
    import tasks.aws_config_scan as aws_config_scan

    def denied(*_args, **_kwargs):
        raise NotImplementedError("list_functions")

    patched = dict(aws_config_scan.SOURCES)
    patched["lambda"] = denied
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aws_config_scan, "SOURCES", patched)
        import tasks.key_scan as key_scan

        mp.setattr(key_scan, "SOURCES", patched)
        second = run_key_scan(org["spec"])
    assert second["gaps"] == 1 and second["run_id"] != first["run_id"]
    with Store.open(url) as store:
        current, _ = store.scans.current_key_findings(migration)
    # The code no longer has it; the Lambda finding of the first scan still counts.
    assert {f.source for f in current if f.key_id == deployer} == {"lambda"}


def test_scan_refuses_without_an_inventory(org):
    from domain.errors import NoInventoryError

    with pytest.raises(NoInventoryError, match="run 'iamc inventory"):
        run_key_scan(org["spec"])


def test_git_history_hit_names_its_commit(org, tmp_path):
    repo = tmp_path / "code"
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), *ident, "commit", "-qm", "a"], check=True, env=env)
    (repo / "app.py").write_text("KEY = None\n")
    subprocess.run(["git", "-C", str(repo), *ident, "commit", "-qam", "b"], check=True, env=env)
    run_inventory(org["spec"])
    summary = run_key_scan(org["spec"])
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        findings = store.scans.key_scan_findings(summary["run_id"])
    deployer = org["keys"]["deployer"]["AccessKeyId"]
    (history,) = [
        f
        for f in findings
        if f.key_id == deployer and f.source == "git-history" and f.location.startswith("app.py")
    ]
    assert history.history_only and history.commit and "app.py:1" in history.where()


def test_an_unreachable_account_makes_the_scan_incomplete_not_failed(org, tmp_path, monkeypatch):
    from domain.errors import AwsAccessError

    run_inventory(org["spec"])
    first = run_key_scan(org["spec"])

    def refused(self, account_id):
        raise AwsAccessError("cannot assume role X: AccessDenied", account_id=account_id)

    monkeypatch.setattr(AwsSessions, "check_access", refused)
    second = run_key_scan(org["spec"])
    assert second["accounts_failed"] == [org["alpha"]]
    assert any(p.startswith(f"failed {org['alpha']}") for p in second["problems"])
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.runs.get_run(second["run_id"]).status == "succeeded"
        units = {u.unit: u.status for u in store.scans.key_scan_units(second["run_id"])}
        assert units[f"aws:{org['alpha']}:lambda:us-east-1"] == "failed"
        current, _ = store.scans.current_key_findings(store.migrations.find_migration("wave-1"))
    # The Lambda finding of the first scan still counts: nobody has looked since.
    assert first["run_id"] != second["run_id"]
    assert any(f.source == "lambda" for f in current)


def test_an_account_whose_scan_raised_is_failed_with_the_reason_and_the_others_stand(
    org, tmp_path, monkeypatch
):
    import flows.key_scan_units

    run_inventory(org["spec"])
    real = flows.key_scan_units.scan_member_account

    def broken(sessions, account_id, *args, **kwargs):
        if account_id == org["alpha"]:
            raise ValueError("malformed Lambda configuration")
        return real(sessions, account_id, *args, **kwargs)

    monkeypatch.setattr(flows.key_scan_units, "scan_member_account", broken)
    summary = run_key_scan(org["spec"])
    assert summary["accounts_failed"] == [org["alpha"]]
    assert "malformed Lambda configuration" in summary["account_failures"][org["alpha"]]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        units = {u.unit: u.status for u in store.scans.key_scan_units(summary["run_id"])}
    assert units[f"aws:{org['alpha']}:lambda:us-east-1"] == "failed"
    others = {status for unit, status in units.items() if org["alpha"] not in unit}
    assert others and "failed" not in others, units  # the code paths were scanned all the same


def test_a_repository_git_refuses_makes_the_scan_incomplete_and_keeps_its_history(
    org, tmp_path, refuse_by_git
):
    repo = tmp_path / "code"
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), *ident, "commit", "-qm", "a"], check=True, env=env)
    (repo / "app.py").write_text("KEY = None\n")  # the key stays in the history only
    run_inventory(org["spec"])
    first = run_key_scan(org["spec"])
    assert first["paths_failed"] == {}
    deployer = org["keys"]["deployer"]["AccessKeyId"]

    refuse_by_git(repo)
    second = run_key_scan(org["spec"])

    (reason,) = second["paths_failed"].values()
    assert list(second["paths_failed"]) == ["code"]
    assert "dubious ownership" in reason and "safe.directory" in reason
    assert any(p.startswith("failed code: git history: git refused") for p in second["problems"])
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(url) as store:
        assert store.runs.get_run(second["run_id"]).status == "succeeded"
        units = {u.unit: u.status for u in store.scans.key_scan_units(second["run_id"])}
        current, _ = store.scans.current_key_findings(store.migrations.find_migration("wave-1"))
    assert units["code:code"] == "scanned" and units["code-history:code"] == "failed"
    # Nobody read the history this time: the first scan's history finding still counts.
    in_app = {f.source for f in current if f.key_id == deployer and f.location == "app.py:1"}
    assert in_app == {"git-history"}


def test_code_paths_are_scanned_while_the_organization_is_read(org, monkeypatch):
    """A code path needs nothing from AWS: its scan does not wait for the organization's read."""
    import threading

    import flows.key_scan_units as key_scan

    run_inventory(org["spec"])
    code_scan_started = threading.Event()
    seen_during_read: list[bool] = []
    real_scan, real_read = key_scan.scan_code_path, key_scan.read_organization

    def scanning(*args, **kwargs):
        code_scan_started.set()
        return real_scan(*args, **kwargs)

    def reading(*args, **kwargs):
        seen_during_read.append(code_scan_started.wait(timeout=20))
        return real_read(*args, **kwargs)

    monkeypatch.setattr(key_scan, "scan_code_path", scanning)
    monkeypatch.setattr(key_scan, "read_organization", reading)
    summary = run_key_scan(org["spec"])
    assert seen_during_read == [True]
    assert summary["paths"] == 2 and summary["findings"]

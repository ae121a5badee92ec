"""The mapping flow as a real Prefect flow run, against in-process moto and a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import InputFileError
from domain.records import MatchStatus
from flows.inventory import run_inventory
from flows.mapping import NoInventoryError, run_mapping
from state import Store
from tasks.aws import AwsSessions


def _human(iam, name: str, email: str | None, groups: tuple[str, ...] = ()) -> None:
    tags = [{"Key": "email", "Value": email}] if email else []
    iam.create_user(UserName=name, Tags=tags)
    iam.create_login_profile(UserName=name, Password="Sandbox-Only-1!")
    for group in groups:
        iam.add_user_to_group(UserName=name, GroupName=group)


@pytest.fixture
def organization(aws):
    """Two accounts: jane in both, victor unmatched, alex ambiguous, a workload; an IdP."""
    sessions = AwsSessions(region="us-east-1")
    management = sessions.management()
    org = management.client("organizations")
    org.create_organization(FeatureSet="ALL")
    ids = [
        org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for name in ("alpha", "beta")
    ]
    for account_id in ids:
        iam = sessions.for_account(account_id).client("iam")
        iam.create_group(GroupName="developers")
        _human(iam, "jane.doe", "jane.doe@example.com", ("developers",))
    alpha = sessions.for_account(ids[0]).client("iam")
    alpha.create_group(GroupName="auditors")
    alpha.add_user_to_group(UserName="jane.doe", GroupName="auditors")
    _human(alpha, "victor.stone", "victor.stone@example.com", ("developers",))
    _human(alpha, "alex.kim", None)
    alpha.create_user(UserName="deployer")
    alpha.create_access_key(UserName="deployer")

    store_id = management.client("sso-admin").list_instances()["Instances"][0]["IdentityStoreId"]
    idp = management.client("identitystore")
    users = {}
    for user_name in (
        "jane.doe@example.com",
        "alex.kim@example.com",
        "alex.kim@contractors.example.com",
    ):
        users[user_name] = idp.create_user(
            IdentityStoreId=store_id,
            UserName=user_name,
            DisplayName=user_name,
            Name={"GivenName": "x", "FamilyName": "y"},
            Emails=[{"Value": user_name, "Type": "work", "Primary": True}],
        )["UserId"]
    group = idp.create_group(IdentityStoreId=store_id, DisplayName="developers")["GroupId"]
    idp.create_group_membership(
        IdentityStoreId=store_id, GroupId=group, MemberId={"UserId": users["jane.doe@example.com"]}
    )
    return ids, users


def write_spec(tmp_path: Path, mapping: str = "") -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n[inventory]\nconcurrency = 2\n'
        + (f"[mapping]\n{mapping}" if mapping else "")
    )
    return spec


def state_counts(tmp_path: Path) -> tuple[int, list]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        runs = store.runs.list_runs()
        mapping = store.identity.latest_mapping(runs[0].migration_id) if runs else None
        return len(runs), mapping


def test_mapping_flow_stores_mappings_findings_and_the_identity_store(organization, tmp_path):
    (alpha, beta), users = organization
    spec = write_spec(tmp_path)
    with pytest.raises(NoInventoryError, match="run 'iamc inventory"):
        run_mapping(spec)

    inventory = run_inventory(spec)
    summary = run_mapping(spec)

    assert (summary["matched"], summary["unmatched"], summary["ambiguous"]) == (2, 1, 1)
    assert summary["identities"] == 1 and summary["identities_in_several_accounts"] == 1
    assert (summary["groups"], summary["groups_matched"], summary["groups_unmatched"]) == (3, 2, 1)
    assert summary["snapshot_id"] == inventory["snapshot_id"]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        run = store.runs.get_run(summary["run_id"])
        assert (run.kind, run.status) == ("mapping", "succeeded")
        mapping = store.identity.latest_mapping(run.migration_id)
        assert mapping is not None and mapping.run_id == run.id
        assert mapping.snapshot_id == inventory["snapshot_id"]
        assert len(mapping.identity_users) == 3 and len(mapping.identity_groups) == 1
        got = {(m.account_id, m.iam_user): m for m in mapping.user_mappings}
        assert set(got) == {
            (alpha, "jane.doe"),
            (beta, "jane.doe"),
            (alpha, "victor.stone"),
            (alpha, "alex.kim"),
        }
        jane_id = users["jane.doe@example.com"]
        assert got[(alpha, "jane.doe")].identity_user_id == jane_id
        assert got[(beta, "jane.doe")].identity_user_id == jane_id
        assert got[(alpha, "jane.doe")].rule == "tag:email"
        assert got[(alpha, "victor.stone")].status == MatchStatus.UNMATCHED
        alex = got[(alpha, "alex.kim")]
        assert (alex.status, alex.rule) == (MatchStatus.AMBIGUOUS, "email-localpart")
        assert sorted(alex.candidates) == [
            "alex.kim@contractors.example.com",
            "alex.kim@example.com",
        ]
        groups = {(g.account_id, g.iam_group): g for g in mapping.group_mappings}
        assert groups[(beta, "developers")].status == MatchStatus.MATCHED
        # victor is unmatched, so only jane counts in alpha: the IdP group holds her.
        assert groups[(alpha, "developers")].status == MatchStatus.MATCHED
        assert groups[(alpha, "auditors")].status == MatchStatus.UNMATCHED  # no such IdP group
        findings = store.snapshots.findings(run_id=run.id)
        assert [(f.kind, f.subject) for f in findings if f.kind == "workload-needs-role"] == [
            ("workload-needs-role", "deployer")
        ]


def test_bad_overrides_csv_stops_before_anything_is_stored(organization, tmp_path):
    (alpha, _beta), _users = organization
    spec = write_spec(tmp_path, 'overrides = "people.csv"\n')
    csv_path = tmp_path / "people.csv"
    csv_path.write_text(f"account_id,iam_user,idp_user\n{alpha},alex.kim,alex.kim@example.com\n")
    run_inventory(spec)
    good = run_mapping(spec)
    assert good["ambiguous"] == 0 and good["by_rule"]["override"] == 1
    runs_before, mapping_before = state_counts(tmp_path)
    db_before = (tmp_path / "state.db").read_bytes()

    csv_path.write_text(f"account_id,iam_user,idp_user\n{alpha},alex.kim\n")
    with pytest.raises(InputFileError) as caught:
        run_mapping(spec)
    assert caught.value.line == 2 and str(csv_path) in str(caught.value)

    # Syntactically fine, but the identity does not exist: found after reading the store.
    csv_path.write_text("account_id,iam_user,idp_user\n*,alex.kim,alex@nowhere.example\n")
    with pytest.raises(InputFileError) as caught:
        run_mapping(spec)
    assert (caught.value.line, caught.value.field) == (2, "idp_user")

    runs_after, mapping_after = state_counts(tmp_path)
    assert runs_after == runs_before
    assert mapping_after == mapping_before
    assert (tmp_path / "state.db").read_bytes() == db_before


def test_map_counts_rules_of_matched_users_and_names_unknown_override_rows(organization, tmp_path):
    from iamc.views.mapping import print_mapping_summary

    (alpha, _beta), _users = organization
    spec = write_spec(tmp_path, 'overrides = "people.csv"\n')
    (tmp_path / "people.csv").write_text(
        "account_id,iam_user,idp_user\n"
        "999999999999,jane.doe,jane.doe@example.com\n"
        f"{alpha},no.such.user,jane.doe@example.com\n"
    )
    run_inventory(spec)
    summary = run_mapping(spec)

    # alex.kim is ambiguous by email-localpart: counted as ambiguous, not under its rule.
    assert summary["ambiguous"] == 1
    assert summary["by_rule"] == {"tag:email": 2}
    problems = summary["override_problems"]
    assert any("people.csv:2" in p and "unknown account 999999999999" in p for p in problems)
    assert any("people.csv:3" in p and "unknown IAM user 'no.such.user'" in p for p in problems)

    from io import StringIO

    from rich.console import Console

    out = StringIO()
    print_mapping_summary(Console(file=out, width=200), summary)
    text = out.getvalue()
    assert "people.csv:2" in text and "people.csv:3" in text
    assert "matched by rule: tag:email 2; ambiguous 1" in text


@pytest.fixture
def central_organization(aws):
    """Members alpha and beta, and the identity account where people sign in as IAM users."""
    sessions = AwsSessions(region="us-east-1")
    org = sessions.management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    alpha, beta, central = (
        org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for name in ("alpha", "beta", "identity")
    )
    people = sessions.for_account(central).client("iam")
    _human(people, "jane", "jane.doe@example.com")
    _human(people, "victor.stone", None)
    _human(people, "kim", "alex.kim@example.com")
    member = sessions.for_account(alpha).client("iam")
    member.create_group(GroupName="developers")
    _human(member, "jane.doe", "jane.doe@example.com", ("developers",))
    _human(member, "victor.stone", "victor@elsewhere.example")
    _human(member, "alex.kim", None)
    _human(sessions.for_account(beta).client("iam"), "jdoe", None)
    return alpha, beta, central


def write_central_spec(tmp_path: Path, central: str, mapping: str = "") -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\ntarget = "central-roles"\n'
        f'[central]\naccount = "{central}"\n[inventory]\nconcurrency = 2\n'
        + (f"[mapping]\n{mapping}" if mapping else "")
    )
    return spec


def test_central_roles_maps_to_the_central_accounts_users_and_protects_them(
    central_organization, tmp_path
):
    from engine.migration import Migration
    from engine.reports import inventory_report

    alpha, beta, central = central_organization
    spec = write_central_spec(tmp_path, central, 'overrides = "people.csv"\n')
    # An override names a central user by its name, as it would an identity-store user.
    (tmp_path / "people.csv").write_text(f"account_id,iam_user,idp_user\n{beta},jdoe,jane\n")

    inventory = run_inventory(spec)
    summary = run_mapping(spec)

    assert summary["identity_source"] == f"central account {central} (IAM users)"
    assert summary["central_account"] == central and "identity_store_id" not in summary
    assert (summary["matched"], summary["unmatched"], summary["ambiguous"]) == (4, 0, 0)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        people = {
            u.name: u
            for i in store.snapshots.load_snapshot(inventory["snapshot_id"])
            if i.account.account_id == central
            for u in i.users
        }
        assert {(n, str(u.user_class)) for n, u in people.items()} == {
            ("jane", "protected"),
            ("victor.stone", "protected"),
            ("kim", "protected"),
        }
        assert people["jane"].class_reason == (
            "the central identity account's users are where people sign in ([central] account)"
        )
        mapping = store.identity.latest_mapping(store.runs.get_run(summary["run_id"]).migration_id)
        assert mapping is not None
        got = {(m.account_id, m.iam_user): m for m in mapping.user_mappings}
        # The central account's own users are never mapped (nor planned): they are protected.
        assert set(got) == {
            (alpha, "jane.doe"),
            (alpha, "victor.stone"),
            (alpha, "alex.kim"),
            (beta, "jdoe"),
        }
        arn = f"arn:aws:iam::{central}:user/"
        assert (got[(alpha, "jane.doe")].identity_user_id, got[(alpha, "jane.doe")].rule) == (
            arn + "jane",
            "tag:email",
        )
        # The e-mail tag names nobody there: the user name decides.
        victor = got[(alpha, "victor.stone")]
        assert (victor.identity_user_id, victor.rule) == (arn + "victor.stone", "username")
        alex = got[(alpha, "alex.kim")]
        assert (alex.identity_user_id, alex.rule) == (arn + "kim", "email-localpart")
        jdoe = got[(beta, "jdoe")]
        assert (jdoe.identity_user_id, jdoe.rule) == (arn + "jane", "override")
        assert {u.user_id for u in mapping.identity_users} == {
            arn + "jane",
            arn + "victor.stone",
            arn + "kim",
        }
        assert mapping.identity_groups == []
        groups = {(g.account_id, g.iam_group): g for g in mapping.group_mappings}
        assert groups[(alpha, "developers")].status == MatchStatus.UNMATCHED

    with Migration.open(spec) as mig:
        rows, _, _ = inventory_report(mig)
    verdicts = {r["account_id"]: (r["cis_1_21"], r["cis_1_21_why"]) for r in rows}
    assert verdicts[central][0] == "PASS" and "[central] account" in verdicts[central][1]
    assert verdicts[alpha][0] == "FAIL"

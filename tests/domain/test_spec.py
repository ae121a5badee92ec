"""The migration spec: each bad field gets its own message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import SpecError
from domain.spec import load_spec

GOOD = """
name = "acme-2026q4"
region = "us-east-1"
member_role = "OrganizationAccountAccessRole"
state = "sqlite:///.iamc/state.db"
protected_users = ["breakglass-*"]
[scope]
include_accounts = ["*"]
exclude_accounts = []
[decommission]
inactive_days = 90
bake_days = 14
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_valid_spec_loads_with_defaults_and_resolves_state_against_spec_dir(tmp_path: Path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "acme-2026q4"
    assert spec.protected_users == ["breakglass-*"]
    assert spec.decommission.bake_days == 14
    assert spec.decommission.reference_regions == []  # every enabled region
    assert spec.inventory.concurrency == 8
    assert spec.state == f"sqlite:///{(tmp_path / '.iamc/state.db').resolve()}"
    assert spec.aws.rate_limits["sso-admin"] == 20.0


def test_minimal_spec_needs_only_a_name(tmp_path: Path):
    spec = load_spec(write(tmp_path, 'name = "wave-1"\n'))
    assert spec.scope.include_accounts == ["*"]
    assert spec.member_role == "OrganizationAccountAccessRole"
    assert spec.restore_role == "OrganizationAccountAccessRole"  # the member role's, by default


def test_restore_role_is_its_own_role_when_named(tmp_path: Path):
    spec = load_spec(write(tmp_path, 'name = "w"\n[aws]\nrestore_role = "iamc-restore"\n'))
    assert (spec.member_role, spec.restore_role) == (
        "OrganizationAccountAccessRole",
        "iamc-restore",
    )
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, 'name = "w"\n[aws]\nrestore_role = "a/b"\n'))
    assert [k for k, _ in caught.value.problems] == ["aws.restore_role"]
    assert "IAM role name" in str(caught.value)


def test_postgres_url_is_kept_as_is(tmp_path: Path):
    url = "postgresql+psycopg://iamc@db.internal/iamc"
    spec = load_spec(write(tmp_path, f'name = "w"\nstate = "{url}"\n'))
    assert spec.state == url


@pytest.mark.parametrize(
    ("replace", "by", "key", "expected"),
    [
        ('name = "acme-2026q4"', 'name = "acme 2026/q4"', "name", "letters, digits"),
        ('region = "us-east-1"', 'region = "useast1"', "region", "AWS region name"),
        (
            'member_role = "OrganizationAccountAccessRole"',
            'member_role = "bad role!"',
            "member_role",
            "IAM role name",
        ),
        ('state = "sqlite:///.iamc/state.db"', 'state = "state.db"', "state", "SQLAlchemy URL"),
        (
            'include_accounts = ["*"]',
            'include_accounts = ["12345"]',
            "scope.include_accounts",
            "12-digit",
        ),
        ("inactive_days = 90", "inactive_days = 0", "decommission.inactive_days", "greater than"),
        ("bake_days = 14", 'bake_days = "two weeks"', "decommission.bake_days", "integer"),
        (
            'protected_users = ["breakglass-*"]',
            'protected_users = [""]',
            "protected_users",
            "empty glob",
        ),
        ("[decommission]", "[decommision]", "decommision", "unknown key"),
        (
            "bake_days = 14",
            'bake_days = 14\nreference_regions = ["eu-west-1", "Frankfurt"]',
            "decommission.reference_regions",
            "'Frankfurt' is not an AWS region name",
        ),
    ],
)
def test_each_bad_field_is_named(tmp_path, replace, by, key, expected):
    assert replace in GOOD
    path = write(tmp_path, GOOD.replace(replace, by))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert str(path) in message
    assert any(k == key or k.startswith(key + ".") for k, _ in caught.value.problems), message
    assert expected in message
    assert caught.value.exit_code != 0


def test_two_bad_fields_give_two_messages(tmp_path):
    text = GOOD.replace('region = "us-east-1"', 'region = "x"').replace(
        "bake_days = 14", "bake_days = -1"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    keys = [k for k, _ in caught.value.problems]
    assert keys == ["region", "decommission.bake_days"]


def test_missing_name(tmp_path):
    with pytest.raises(SpecError, match="name: required key is missing"):
        load_spec(write(tmp_path, 'region = "us-east-1"\n'))


def test_not_toml(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "name = \n"))


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.toml")


def test_unknown_rate_limit_family(tmp_path):
    with pytest.raises(SpecError, match=r"aws\.rate_limits: unknown API family s3"):
        load_spec(write(tmp_path, 'name = "w"\n[aws.rate_limits]\ns3 = 5\n'))


def test_one_bad_key_is_one_line_naming_the_file_line_and_key(tmp_path):
    path = write(tmp_path, GOOD.replace('region = "us-east-1"', 'regoin = "us-east-1"'))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == (
        f"{path}:3: invalid migration spec: regoin: unknown key (check its spelling)"
    )


def test_each_of_several_problems_names_its_line(tmp_path):
    text = GOOD.replace("bake_days = 14", "bake_days = -1") + (
        '[[waves]]\nname = "a"\ninclude_accounts = ["111111111111"]\n'
        '[[waves]]\nnme = "b"\ninclude_accounts = ["222222222222"]\n'
        "[aws]\nrate_limits = { iam = 5, s3 = 5 }\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("spec.toml: invalid migration spec")
    # A key's own line; a missing key's table; an inline table's key: the line it is on.
    assert "  decommission.bake_days (line 12): " in lines[1]
    assert any(line.startswith("  waves.1.name (line 16): required key") for line in lines)
    assert any(line.startswith("  waves.1.nme (line 17): unknown key") for line in lines)
    assert any(line.startswith("  aws.rate_limits (line 20): unknown API family") for line in lines)


def test_a_spec_is_validated_once_per_process_until_its_text_changes(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "m1"\n')
    first = load_spec(spec)
    assert load_spec(str(spec)) is first  # the CLI's check and the command's migration
    spec.write_text('name = "m2"\n')  # same size, maybe the same mtime: the text decides
    assert load_spec(spec).name == "m2"
    spec.write_text('name = "m1"\n')
    assert load_spec(spec) is first

"""The credential kinds' table: one row per kind, each floor's view of a user read from it."""

from __future__ import annotations

from domain.credentials import (
    ACCESS_KEY,
    CONSOLE_PASSWORD,
    CREDENTIAL_KINDS,
    IN_TEARDOWN_ORDER,
    disable_items,
)
from domain.records import AccessKey, MfaDevice, SshPublicKey, User
from domain.teardown import TEARDOWN


def _user() -> User:
    return User(
        name="alice",
        user_id="AIDA1",
        arn="arn:aws:iam::111122223333:user/alice",
        password_enabled=True,
        access_keys=[
            AccessKey("AKIAAAAAAAAAAAAAWXYZ", "Active"),
            AccessKey("AKIABBBBBBBBBBBB1234", "Inactive"),
        ],
        mfa_devices=[MfaDevice("arn:aws:iam::111122223333:mfa/alice")],
        ssh_public_keys=[SshPublicKey("APKA1", "Active")],
    )


def test_names_and_teardown_positions_are_unique():
    assert len({kind.name for kind in CREDENTIAL_KINDS}) == len(CREDENTIAL_KINDS)
    positions = [kind.teardown_position for kind in CREDENTIAL_KINDS]
    assert sorted(positions) == list(range(1, len(CREDENTIAL_KINDS) + 1))
    credential_rows = [step.kind for step in TEARDOWN if step.credential is not None]
    assert credential_rows == [kind.teardown_kind for kind in IN_TEARDOWN_ORDER]
    assert TEARDOWN[0].kind == "delete-login-profile" and TEARDOWN[-1].kind == "delete-user"


def test_items_ids_and_how_they_are_shown():
    user = _user()
    assert CONSOLE_PASSWORD.ids(user) == ["console password"]
    assert ACCESS_KEY.active_ids(user) == ["AKIAAAAAAAAAAAAAWXYZ"]
    assert ACCESS_KEY.shown("AKIAAAAAAAAAAAAAWXYZ") == "AKIA…WXYZ"
    assert ACCESS_KEY.usable_phrase(2) == "2 active access keys"
    assert [(kind.disable_action, shown) for kind, _, shown in disable_items(user)] == [
        ("deactivate-access-key", "AKIA…WXYZ"),
        ("deactivate-ssh-public-key", "APKA1"),
    ]


def test_a_lost_item_names_itself_without_a_whole_key_id():
    line = ACCESS_KEY.lost_line({"access_key_id": "AKIAAAAAAAAAAAAAWXYZ", "created": "2024"})
    assert line.startswith("access key AKIA…WXYZ (created 2024): its secret is gone")
    assert CONSOLE_PASSWORD.lost_line({}).startswith("console password: it can't be recovered")

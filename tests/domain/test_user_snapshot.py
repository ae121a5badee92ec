"""A re-read snapshot: what counts as a change, and what a begun teardown keeps."""

from __future__ import annotations

from domain.user_snapshot import merge_snapshot, same_snapshot


def _user(**changes):
    base = {
        "user_id": "AIDA1",
        "tags": {"team": "payments"},
        "groups": ["devs"],
        "inline_policies": {"own": {"Version": "2012-10-17"}},
        "attached_policies": ["arn:aws:iam::1:policy/read"],
        "access_keys": [{"access_key_id": "AKIA1", "status": "Inactive", "last_used": None}],
        "console_password": {"existed": True},
        "permissions_boundary": None,
    }
    return {**base, **changes}


def test_a_key_used_since_or_another_list_order_is_no_change():
    used = _user(
        access_keys=[{"access_key_id": "AKIA1", "status": "Inactive", "last_used": "2026-12-01"}]
    )
    assert same_snapshot(_user(groups=["a", "b"]), _user(groups=["b", "a"]))
    assert same_snapshot(_user(), used)
    assert not same_snapshot(_user(), _user(groups=["devs", "late"]))
    assert not same_snapshot(_user(), _user(tags={"team": "risk"}))


def test_a_begun_teardown_keeps_what_it_removed_and_adds_what_appeared():
    stored = _user()
    live = _user(
        groups=["late"],  # devs removed by the teardown, late added while stopped
        console_password={"existed": False},  # removed by the teardown
        inline_policies={"own": {"Version": "2012-10-17"}, "late": {}},
        access_keys=[],
    )

    merged = merge_snapshot(stored, live, {"remove-from-group", "delete-login-profile"})

    assert merged["groups"] == ["devs", "late"]
    assert merged["console_password"] == {"existed": True}
    # Kinds whose teardown has not begun: what is live now is the truth.
    assert set(merged["inline_policies"]) == {"own", "late"} and merged["access_keys"] == []
    assert merge_snapshot(stored, live, set()) == live

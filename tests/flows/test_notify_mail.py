"""`iamc notify --send` and the notify flow's send: a provisioned plan's notices mailed to a real
SMTP server (aiosmtpd on 127.0.0.1, AUTH from the environment), each person once.

The dry run says who would be mailed and sends nothing; a recipient the server refuses fails
the run (CLI exit 1, a Failed flow run in the UI) naming them and how to send again, while the
others are mailed; once fixed, the re-run mails only them; another run mails nobody.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domain.errors import MailError, MailFailed
from engine.apply import apply_plan
from iamc.cli import app
from state import Store
from tests.smtp_server import PASSWORD, USER, LocalSmtp, smtp_table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ALICE, BOB = "alice@example.com", "bob@example.com"


def _save_mapping(spec: Path, world: Any) -> None:
    """The identity store's people as a mapping run saw them (notify reads their e-mails)."""
    from domain.records import IdentityUser

    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        migration_id = store.migrations.find_migration("wave-1")
        snapshot = store.snapshots.latest_snapshot(migration_id)
        run_id = store.runs.start_run(migration_id, "mapping", {"spec": str(spec)})
        people = [IdentityUser(uid, name, name, [name]) for name, uid in world.users.items()]
        store.identity.save_mapping(run_id, snapshot.id, people, [], [], [])
        store.runs.finish_run(run_id, "succeeded")


def _provisioned(clean: Any, kit: Any, tmp_path: Path) -> tuple[Path, int]:
    """alice (first account) and bob (second) migrated and provisioned."""
    prefix = f"m{uuid.uuid4().hex[:6]}-"
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1, password=True)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(
        clean, tmp_path, [(a1, f"{prefix}jane", ALICE), (a2, f"{prefix}bob", BOB)]
    )
    _save_mapping(spec, clean)
    assert apply_plan(spec, plan_id, "provision", poll=kit.QUICK)["failed"] == 0
    return spec, plan_id


def _journal(spec: Path, plan_id: int) -> dict[str, str]:
    with Store.open(f"sqlite:///{spec.parent / 'state.db'}") as store:
        return {r.recipient: r.status for r in store.mail.of_plan(plan_id)}


def _notify(spec: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["notify", "-c", str(spec), *args])


def test_notify_mails_each_person_once_and_names_who_the_server_refused(
    clean, retire_kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from flows.notify import notify_flow

    spec, plan_id = _provisioned(clean, retire_kit, tmp_path)
    monkeypatch.setenv("IAMC_TEST_SMTP_USER", USER)
    monkeypatch.setenv("IAMC_TEST_SMTP_PASSWORD", PASSWORD)
    with LocalSmtp(auth=True) as smtp:
        spec.write_text(spec.read_text() + smtp_table(smtp.port, auth=True))
        outputs = []

        dry = _notify(spec)
        outputs.append(dry.output)
        assert dry.exit_code == 0, dry.output
        assert "Nothing was sent (dry run). 2 notice(s) would be mailed" in dry.output
        assert ALICE in dry.output and BOB in dry.output
        assert f"notify {plan_id} --send" in dry.output
        assert smtp.received == [] and _journal(spec, plan_id) == {}

        # From the UI: the flow's send, and the server refuses bob.
        smtp.refuse.add(BOB)
        state = notify_flow(str(spec), plan_id, send=True, return_state=True)
        assert state.is_failed()
        assert f"{BOB} (bob@example.com): failed: refused: 550 5.1.1" in state.message
        assert f"notify {plan_id} --send" in state.message
        assert [r.rcpt_tos for r in smtp.received] == [[ALICE]]
        assert smtp.received[0].message["From"] == "iam-team@example.com"
        assert smtp.received[0].login == USER
        assert _journal(spec, plan_id) == {ALICE: "sent", BOB: "failed"}
        # The same from a shell: exit 1 (MailFailed), bob named, alice not mailed again.
        refused = _notify(spec, "--send")
        assert isinstance(refused.exception, MailFailed) and refused.exception.exit_code == 1
        assert f"{BOB} (bob@example.com): failed: refused: 550" in str(refused.exception)
        assert "1 already sent" in str(refused.exception)
        assert [r.rcpt_tos for r in smtp.received] == [[ALICE]]

        # bob's mailbox exists now: the re-run mails bob alone.
        smtp.refuse.clear()
        fixed = _notify(spec, "--send")
        outputs.append(fixed.output)
        assert fixed.exit_code == 0, fixed.output
        assert "Mailed 1 notice(s) through 127.0.0.1" in fixed.output
        assert "1 already sent earlier" in fixed.output
        assert [r.rcpt_tos for r in smtp.received] == [[ALICE], [BOB]]

        again = _notify(spec, "--send")
        outputs.append(again.output)
        assert again.exit_code == 0, again.output
        assert "Mailed 0 notice(s)" in again.output and "2 already sent earlier" in again.output
        assert len(smtp.received) == 2
        assert _journal(spec, plan_id) == {ALICE: "sent", BOB: "sent"}

    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        runs = [r for r in store.runs.list_runs() if r.kind == "notify"]
    assert [r.status for r in runs] == ["succeeded", "failed", "failed", "succeeded", "succeeded"]
    said = [
        *outputs,
        state.message,
        str(refused.exception),
        *(repr((r.summary, r.error, r.params)) for r in runs),
    ]
    assert not [s for s in said if PASSWORD in s]


def test_send_without_the_credentials_in_the_environment_sends_nothing(
    clean, retire_kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spec, plan_id = _provisioned(clean, retire_kit, tmp_path)
    monkeypatch.delenv("IAMC_TEST_SMTP_USER", raising=False)
    monkeypatch.delenv("IAMC_TEST_SMTP_PASSWORD", raising=False)
    with LocalSmtp(auth=True) as smtp:
        spec.write_text(spec.read_text() + smtp_table(smtp.port, auth=True))
        ran = _notify(spec, "--send")
        # The CLI's main maps the error to its exit code and prints its message.
        assert isinstance(ran.exception, MailError) and ran.exception.exit_code == 2
        assert "IAMC_TEST_SMTP_USER, IAMC_TEST_SMTP_PASSWORD" in str(ran.exception)
        assert "nothing was sent" in str(ran.exception)
        assert smtp.received == [] and _journal(spec, plan_id) == {}

"""Mailing the notices to a real SMTP server (aiosmtpd on 127.0.0.1), journaled per recipient.

Each person's notice goes out once: a re-run sends nothing more; a recipient the server
refuses is journaled with its reply while the others go on, and only that one is sent once it
is fixed; a run killed between a delivery's intent and its outcome leaves it unknown, which is
never sent again unless the operator says so. Credentials come from the environment and show
nowhere. SQLite and PostgreSQL (``IAMC_TEST_POSTGRES_URL``) alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from domain.errors import MailError
from domain.notice_mail import FAILED, SENDING, SENT, UNKNOWN, Outgoing, read_outgoing
from domain.notices import Notice, NoticeContext, write_notices
from domain.notify_spec import Notify, NotifySmtp
from engine.executor import AFTER_CALL, AFTER_INTENT, FAULT_ENV, InjectedCrash
from engine.notice_mail import ALREADY_SENT, WOULD_SEND, MailIds, mail_notices
from state import Store
from tests.smtp_server import PASSWORD, USER, LocalSmtp

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PEOPLE = ["alice", "bob", "carol", "dave"]
SENDER = "iam-team@example.com"


def _address(person: str) -> str:
    return f"{person}@example.com"


@dataclass
class Setup:
    store: Store
    migration_id: int
    plan_id: int
    tmp: Path

    def run(self) -> int:
        return self.store.runs.start_run(self.migration_id, "notify", {"plan_id": self.plan_id})

    def ids(self) -> MailIds:
        return MailIds(self.migration_id, self.plan_id, self.run())

    def notices(self, disable_on: date = date(2027, 1, 11)) -> list[Outgoing]:
        """The notice writer's .eml files for PEOPLE, read back (a new Message-ID each time)."""
        ctx = NoticeContext(
            migration="wave-1",
            portal_url="https://d-1234567890.awsapps.com/start",
            disable_on=disable_on,
            delete_on=date(2027, 1, 25),
            sender=SENDER,
        )
        notices = [
            Notice(p, p.title(), _address(p), {"111111111111": ["Readers"]}, {}, [("1" * 12, p)])
            for p in PEOPLE
        ]
        out = self.tmp / f"notices-{time.monotonic_ns()}"
        rows = write_notices(notices, ctx, out, date(2027, 1, 4))
        return [read_outgoing(Path(r["eml_file"]), r["user_name"], r["name"]) for r in rows]

    def journal(self) -> dict[str, str]:
        return {r.recipient: r.status for r in self.store.mail.of_plan(self.plan_id)}


@pytest.fixture
def setup(store_url: str, tmp_path: Path) -> Setup:
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration("wave-1", {})
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(migration_id, plan_run, "h" * 64, {"actions": []}, 0)
        yield Setup(store, migration_id, plan_id, tmp_path)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IAMC_TEST_SMTP_USER", USER)
    monkeypatch.setenv("IAMC_TEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    with LocalSmtp(auth=True) as server:
        yield server


def _notify(port: int, **smtp: object) -> Notify:
    settings = NotifySmtp.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "timeout": 10,
            "username_env": "IAMC_TEST_SMTP_USER",
            "password_env": "IAMC_TEST_SMTP_PASSWORD",
            **smtp,
        }
    )
    return Notify(sender=SENDER, smtp=settings)


def _statuses(report) -> dict[str, str]:
    return {d.recipient: d.status for d in report.deliveries}


def test_each_person_is_mailed_once_and_a_rerun_mails_nobody(setup: Setup, smtp: LocalSmtp):
    notify = _notify(smtp.port)
    outgoing = setup.notices()

    dry = mail_notices(setup.store, setup.ids(), outgoing, notify, send=False)
    assert _statuses(dry) == {_address(p): WOULD_SEND for p in PEOPLE}
    assert smtp.received == [] and setup.journal() == {}

    report = mail_notices(setup.store, setup.ids(), outgoing, notify, send=True)

    assert _statuses(report) == {_address(p): SENT for p in PEOPLE}
    assert report.problem("iamc notify --send") is None
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == [_address(p) for p in PEOPLE]
    assert all(len(r.rcpt_tos) == 1 and r.mail_from == SENDER for r in smtp.received)
    subjects = {r.rcpt_tos[0]: r.message["Subject"] for r in smtp.received}
    assert subjects == {o.recipients[0]: o.subject for o in outgoing}
    assert all("disabled on 2027-01-11" in s for s in subjects.values())
    # The .eml's Message-ID is what was mailed, and what the journal keeps for the mail log.
    journaled = {r.recipient: r.message_id for r in setup.store.mail.of_plan(setup.plan_id)}
    assert {r.rcpt_tos[0]: r.message["Message-ID"] for r in smtp.received} == journaled
    assert all(r.login == USER for r in smtp.received)  # AUTH with the environment's user
    assert setup.journal() == {_address(p): SENT for p in PEOPLE}

    # notify runs again (the notices written anew: new Message-IDs, the same content).
    again = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    assert _statuses(again) == {_address(p): ALREADY_SENT for p in PEOPLE}
    assert len(smtp.received) == len(PEOPLE)


def test_a_refused_recipient_is_journaled_with_the_reply_and_alone_sent_once_fixed(
    setup: Setup, smtp: LocalSmtp
):
    notify = _notify(smtp.port)
    smtp.refuse.add(_address("bob"))

    report = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    assert _statuses(report) == {**{_address(p): SENT for p in PEOPLE}, _address("bob"): FAILED}
    assert {r.rcpt_tos[0] for r in smtp.received} == {_address(p) for p in PEOPLE} - {
        _address("bob")
    }
    (bob,) = [r for r in setup.store.mail.of_plan(setup.plan_id) if r.notice == "bob"]
    assert bob.status == FAILED and bob.error.startswith("550 5.1.1")
    problem = report.problem("iamc notify -c spec.toml 1 --send")
    assert problem is not None
    assert "bob@example.com (bob): failed: refused: 550 5.1.1" in problem
    assert "iamc notify -c spec.toml 1 --send" in problem

    smtp.refuse.clear()  # the mailbox exists now
    again = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    assert _statuses(again)[_address("bob")] == SENT
    assert [d.status for d in again.deliveries].count(ALREADY_SENT) == len(PEOPLE) - 1
    assert len(smtp.to(_address("bob"))) == 1 and len(smtp.received) == len(PEOPLE)
    assert again.problem("x") is None
    (bob,) = [r for r in setup.store.mail.of_plan(setup.plan_id) if r.notice == "bob"]
    assert bob.status == SENT and bob.attempts == 2


def test_a_crash_after_the_intent_leaves_it_unknown_and_it_is_sent_only_when_asked(
    setup: Setup, smtp: LocalSmtp, monkeypatch: pytest.MonkeyPatch
):
    notify = _notify(smtp.port)
    monkeypatch.setenv(FAULT_ENV, f"mail:{_address('carol')}:{AFTER_INTENT}")

    with pytest.raises(InjectedCrash):
        mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    assert {r.rcpt_tos[0] for r in smtp.received} == {_address("alice"), _address("bob")}
    assert setup.journal() == {
        _address("alice"): SENT,
        _address("bob"): SENT,
        _address("carol"): SENDING,
    }
    monkeypatch.delenv(FAULT_ENV)

    resumed = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    # carol's outcome is unknown: not sent again; dave, never tried, is sent.
    assert _statuses(resumed) == {
        _address("alice"): ALREADY_SENT,
        _address("bob"): ALREADY_SENT,
        _address("carol"): UNKNOWN,
        _address("dave"): SENT,
    }
    assert smtp.to(_address("carol")) == []
    problem = resumed.problem("iamc notify -c spec.toml 1 --send")
    (carol,) = [r for r in setup.store.mail.of_plan(setup.plan_id) if r.notice == "carol"]
    assert f"look for Message-ID {carol.message_id}" in problem
    assert "--resend-unknown" in problem and "--mark-unknown-sent" in problem

    # The mail log shows it never arrived: the operator asks for it to be sent again.
    resent = mail_notices(
        setup.store, setup.ids(), setup.notices(), notify, send=True, unknown="resend"
    )

    assert _statuses(resent)[_address("carol")] == SENT
    assert resent.problem("x") is None
    assert {p: len(smtp.to(_address(p))) for p in PEOPLE} == dict.fromkeys(PEOPLE, 1)


def test_a_crash_after_the_server_took_it_never_mails_twice(
    setup: Setup, smtp: LocalSmtp, monkeypatch: pytest.MonkeyPatch
):
    notify = _notify(smtp.port)
    monkeypatch.setenv(FAULT_ENV, f"mail:{_address('bob')}:{AFTER_CALL}")
    with pytest.raises(InjectedCrash):
        mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    monkeypatch.delenv(FAULT_ENV)
    assert len(smtp.to(_address("bob"))) == 1 and setup.journal()[_address("bob")] == SENDING

    resumed = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert _statuses(resumed)[_address("bob")] == UNKNOWN
    assert len(smtp.to(_address("bob"))) == 1

    # The mail log shows it arrived: recorded as sent, and it stays sent.
    marked = mail_notices(
        setup.store, setup.ids(), setup.notices(), notify, send=True, unknown="mark-sent"
    )
    assert _statuses(marked)[_address("bob")] == ALREADY_SENT and marked.problem("x") is None
    assert setup.journal() == {_address(p): SENT for p in PEOPLE}
    again = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert set(_statuses(again).values()) == {ALREADY_SENT}
    assert {p: len(smtp.to(_address(p))) for p in PEOPLE} == dict.fromkeys(PEOPLE, 1)


def test_a_changed_notice_is_a_new_notice(setup: Setup, smtp: LocalSmtp):
    notify = _notify(smtp.port)
    mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)

    # The dates moved (notify ran on a later day): everyone is told the new ones.
    later = mail_notices(
        setup.store, setup.ids(), setup.notices(date(2027, 1, 18)), notify, send=True
    )

    assert set(_statuses(later).values()) == {SENT}
    assert all("an updated notice" in d.detail for d in later.deliveries)
    assert len(smtp.received) == 2 * len(PEOPLE)
    assert "disabled on 2027-01-18" in smtp.received[-1].message["Subject"]


def test_credentials_come_from_the_environment_and_show_nowhere(
    setup: Setup, smtp: LocalSmtp, monkeypatch: pytest.MonkeyPatch, caplog, store_url: str
):
    caplog.set_level(logging.DEBUG)
    notify = _notify(smtp.port)
    monkeypatch.delenv("IAMC_TEST_SMTP_PASSWORD")

    with pytest.raises(MailError, match="IAMC_TEST_SMTP_PASSWORD") as missing:
        mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert "nothing was sent" in str(missing.value)
    assert smtp.received == [] and setup.journal() == {}

    monkeypatch.setenv("IAMC_TEST_SMTP_PASSWORD", "not-" + PASSWORD)
    with pytest.raises(MailError, match="refused the login") as refused:
        mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert smtp.received == [] and setup.journal() == {}

    monkeypatch.setenv("IAMC_TEST_SMTP_PASSWORD", PASSWORD)
    smtp.refuse.add(_address("dave"))
    report = mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert len(smtp.received) == len(PEOPLE) - 1

    said = [str(missing.value), str(refused.value), caplog.text, report.problem("x")]
    said += [repr(d) for d in report.deliveries] + [repr(report.summary())]
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            said += [repr(row) for row in connection.execute(text("SELECT * FROM notice_mails"))]
            said += [repr(row) for row in connection.execute(text("SELECT * FROM runs"))]
    finally:
        engine.dispose()
    for secret in (PASSWORD, "not-" + PASSWORD):
        assert not [s for s in said if secret in s]


def test_without_a_server_table_send_is_refused_and_nothing_is_journaled(setup: Setup):
    with pytest.raises(MailError, match=r"\[notify.smtp\]"):
        mail_notices(setup.store, setup.ids(), setup.notices(), Notify(), send=True)
    assert setup.journal() == {}


def test_max_per_minute_paces_the_messages(setup: Setup, smtp: LocalSmtp):
    notify = _notify(smtp.port, max_per_minute=600)  # one every 0.1 s
    started = time.monotonic()
    mail_notices(setup.store, setup.ids(), setup.notices(), notify, send=True)
    assert time.monotonic() - started >= 0.1 * (len(PEOPLE) - 1)
    assert len(smtp.received) == len(PEOPLE)

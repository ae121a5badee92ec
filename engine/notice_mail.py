"""Mailing the notices: each recipient journaled before and after its SMTP transaction.

For each notice and recipient the journal (``store.mail``) is read first: a delivery of the
same content already ``sent`` is not sent again; one the server refused (``failed``) is tried
again. The intent (``sending``) is committed before the transaction and the outcome after, on
one SMTP connection for the batch. Without ``send`` nothing is written and nothing is mailed:
the report says what would be.

A delivery whose intent has no outcome (the process died between the two, or the connection
dropped before the server's reply) may or may not have reached the server, and the journal
can't tell. It is reported as ``unknown`` and not sent again: the run fails, naming the
person and the Message-ID to look for in the mail server's log, so nobody is left untold
without the operator knowing; the operator then says what the log showed (``resend`` or
``mark-sent``). Sending again by default would mail a person twice whenever a run dies after
the server took the message, and a duplicate notice about one's access being taken away reads
like a second change.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from domain.errors import MailError
from domain.notice_mail import (
    FAILED,
    MARK_UNKNOWN_SENT,
    REPORT_UNKNOWN,
    RESEND_UNKNOWN,
    SENDING,
    SENT,
    UNKNOWN,
    UNKNOWN_CHOICES,
    MailRecord,
    Outgoing,
)
from domain.notify_spec import Notify, NotifySmtp
from engine.executor import AFTER_CALL, AFTER_INTENT, FAULT_ENV, InjectedCrash, parse_fault
from tasks.mail import ConnectionLost, Credentials, MailServer

if TYPE_CHECKING:
    from state import Store

log = logging.getLogger(__name__)

# A delivery's line in the report (besides the journal's sent / failed / unknown).
WOULD_SEND = "would send"
ALREADY_SENT = "already sent"
CLAIMED = "claimed by another run"  # journaled by a run running at the same time
NOT_ATTEMPTED = "not attempted"  # the connection was lost before its turn
FAULT_PREFIX = "mail:"  # IAMC_FAULT=mail:<recipient>:after-intent|after-call (tests only)


@dataclass(frozen=True)
class Delivery:
    """What became of one notice for one recipient in this run."""

    notice: str
    name: str
    recipient: str
    status: str
    detail: str = ""


@dataclass
class MailReport:
    """The run's deliveries, and who could not be mailed at all (no e-mail address)."""

    send: bool
    where: str | None  # host:port (security); None without [notify.smtp]
    deliveries: list[Delivery] = field(default_factory=list)
    no_address: list[str] = field(default_factory=list)

    def of(self, *statuses: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.status in statuses]

    def summary(self) -> dict[str, object]:
        """Counts for the run's summary, and the addresses mailed or to be mailed."""
        counts: dict[str, int] = {}
        for d in self.deliveries:
            counts[d.status] = counts.get(d.status, 0) + 1
        return {
            "send": self.send,
            "smtp": self.where,
            "counts": counts,
            "recipients": [d.recipient for d in self.of(SENT, WOULD_SEND)],
            "no_address": list(self.no_address),
        }

    def problem(self, send_again: str) -> str | None:
        """The run's failure message: who was not mailed and how to finish; None when all were.

        Args:
            send_again: The command that sends again (``iamc notify -c SPEC PLAN --send``).
        """
        left, unknown = self.of(FAILED, NOT_ATTEMPTED), self.of(UNKNOWN)
        if not self.send or not (left or unknown):
            return None
        done = f"{len(self.of(SENT))} sent, {len(self.of(ALREADY_SENT))} already sent"
        lines = [f"mailing the notices: {done}; {len(left) + len(unknown)} not done:"]
        lines += [f"  {d.recipient} ({d.notice}): {d.status}: {d.detail}" for d in left]
        if left:
            lines.append(
                "Fix the cause (the address in the identity store, the server's rule, the "
                f"connection), then send again; only what is not sent is mailed: {send_again}"
            )
        lines += [f"  {d.recipient} ({d.notice}): outcome unknown: {d.detail}" for d in unknown]
        if unknown:
            lines.append(
                "Not sent again, so nobody gets it twice. Once the mail log says: "
                f"{send_again} --mark-unknown-sent (it arrived) or --resend-unknown (it did not); "
                "in the UI, the notify run's parameter unknown = mark-sent or resend"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class MailIds:
    """Whose deliveries these are: the migration, the plan, the notify run."""

    migration_id: int
    plan_id: int
    run_id: int


def credentials_of(smtp: NotifySmtp, environ: Mapping[str, str]) -> Credentials | None:
    """The SMTP credentials from the environment variables the spec names.

    Raises:
        MailError: A named variable is not set or empty (nothing is sent).
    """
    if smtp.username_env is None or smtp.password_env is None:
        return None
    missing = [n for n in (smtp.username_env, smtp.password_env) if not environ.get(n)]
    if missing:
        raise MailError(
            f"[notify.smtp] names the environment variable(s) {', '.join(missing)} for the "
            f"SMTP credentials, and {'it is' if len(missing) == 1 else 'they are'} not set in "
            "this process's environment (for a deployment: the worker's or `iamc serve`'s); "
            "nothing was sent"
        )
    return Credentials(environ[smtp.username_env], environ[smtp.password_env])


def _unknown_detail(record: MailRecord, where: str | None) -> str:
    return (
        f"run {record.run_id} journaled it as being sent at "
        f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC (attempt {record.attempts}) and recorded no "
        f"outcome{f' ({record.error})' if record.error else ''}: look for Message-ID "
        f"{record.message_id} in the mail log of {where or 'the SMTP server'}"
    )


@dataclass
class _Pending:
    """One recipient of one notice to send: new (no record) or retried (its record)."""

    outgoing: Outgoing
    recipient: str
    record: MailRecord | None
    retry_from: tuple[str, ...] = ()
    earlier: MailRecord | None = None  # an earlier content of the notice sent to them


def _classify(
    report: MailReport,
    outgoing: list[Outgoing],
    records: list[MailRecord],
    unknown: str,
    mark_sent: Callable[[MailRecord], bool],
) -> list[_Pending]:
    """Sort each (notice, recipient) by what its journal says; return what to send."""
    by_key = {(r.notice, r.recipient, r.message_hash): r for r in records}
    earlier = {(r.notice, r.recipient): r for r in records if r.status == SENT}
    pending: list[_Pending] = []
    for out in outgoing:
        if not out.recipients:
            report.no_address.append(out.notice)
        for recipient in out.recipients:
            record = by_key.get((out.notice, recipient, out.digest))
            status = record.status if record else None
            if record is None or status == FAILED:
                before = earlier.get((out.notice, recipient))
                pending.append(_Pending(out, recipient, record, (FAILED,), before))
            elif status == SENT:
                when = f"{record.sent_at:%Y-%m-%d %H:%M} UTC" if record.sent_at else ""
                report.deliveries.append(
                    Delivery(out.notice, out.name, recipient, ALREADY_SENT, f"sent {when}")
                )
            elif unknown == RESEND_UNKNOWN:
                pending.append(_Pending(out, recipient, record, (SENDING, UNKNOWN)))
            elif unknown == MARK_UNKNOWN_SENT and mark_sent(record):
                report.deliveries.append(
                    Delivery(out.notice, out.name, recipient, ALREADY_SENT, "marked sent")
                )
            else:
                detail = _unknown_detail(record, report.where)
                report.deliveries.append(Delivery(out.notice, out.name, recipient, UNKNOWN, detail))
    return pending


def mail_notices(
    store: Store,
    ids: MailIds,
    outgoing: list[Outgoing],
    notify: Notify,
    *,
    send: bool,
    unknown: str = REPORT_UNKNOWN,
    environ: Mapping[str, str] | None = None,
) -> MailReport:
    """Mail the notices (``send``), or say what would be mailed; every recipient journaled.

    Args:
        store: The open store (``store.mail``: the journal).
        ids: The migration, plan and notify run.
        outgoing: The notices written by this run.
        notify: The spec's ``[notify]``; its ``smtp`` says where mail goes.
        send: Mail them; False: write nothing, mail nothing, report what would be mailed.
        unknown: What to do with a delivery whose outcome is unknown: ``report`` it (and
            fail), ``resend`` it, or ``mark-sent`` (the mail log shows it arrived).
        environ: Where the credentials' variables are read; default ``os.environ``.

    Returns:
        Each recipient's delivery.

    Raises:
        MailError: ``send`` without ``[notify.smtp]``, a credential variable is not set, or
            the server can't be reached or refused the login: nothing was sent.
    """
    if unknown not in UNKNOWN_CHOICES:
        raise MailError(f"unknown = {unknown!r}: expected one of {', '.join(UNKNOWN_CHOICES)}")
    smtp = notify.smtp
    if send and smtp is None:
        raise MailError(
            "--send needs a [notify.smtp] table in the spec (host, and username_env / "
            "password_env naming the environment variables that hold the credentials); "
            "nothing was sent"
        )
    report = MailReport(send=send, where=smtp.where() if smtp else None)
    records = store.mail.deliveries(ids.migration_id, [o.notice for o in outgoing])

    def mark_sent(record: MailRecord) -> bool:
        note = f"marked sent by run {ids.run_id}: the operator found it in the mail log"
        return send and store.mail.mark_sent(
            record.id, ids.run_id, from_statuses=(SENDING, UNKNOWN), note=note
        )

    pending = _classify(report, outgoing, records, unknown if send else REPORT_UNKNOWN, mark_sent)
    if not send or smtp is None:
        report.deliveries += [
            Delivery(p.outgoing.notice, p.outgoing.name, p.recipient, WOULD_SEND, _was(p))
            for p in pending
        ]
        return report
    if pending:
        credentials = credentials_of(smtp, os.environ if environ is None else environ)
        sender = notify.mail_from
        with MailServer(smtp, credentials) as server:
            _Batch(store, ids, server, sender, report, smtp.max_per_minute).run(pending)
    return report


def _was(p: _Pending) -> str:
    if p.record is None and p.earlier is not None:
        return (
            f"an updated notice: an earlier one ({p.earlier.subject!r}) was sent "
            f"{p.earlier.sent_at or p.earlier.created_at:%Y-%m-%d}"
        )
    if p.record is None:
        return ""
    if p.record.status == FAILED:
        return f"again: refused before ({p.record.error})"
    return "again: its earlier outcome is unknown"


class _Batch:
    """One SMTP session's messages: claim, send, record, for each notice in turn."""

    def __init__(
        self,
        store: Store,
        ids: MailIds,
        server: MailServer,
        sender: str,
        report: MailReport,
        max_per_minute: int | None,
    ):
        self.store, self.ids, self.server, self.sender = store, ids, server, sender
        self.report = report
        self.interval = 60.0 / max_per_minute if max_per_minute else 0.0
        self.last: float | None = None
        self.fault = parse_fault(os.environ.get(FAULT_ENV))

    def run(self, pending: list[_Pending]) -> None:
        by_message: dict[int, list[_Pending]] = {}
        for p in pending:
            by_message.setdefault(id(p.outgoing), []).append(p)
        groups = list(by_message.values())
        for index, group in enumerate(groups):
            try:
                self._send_one(group)
            except ConnectionLost:
                for rest in groups[index + 1 :]:
                    self._add(rest, NOT_ATTEMPTED, "the SMTP session ended before its turn")
                return

    def _add(self, group: list[_Pending], status: str, detail: str) -> None:
        for p in group:
            self.report.deliveries.append(
                Delivery(p.outgoing.notice, p.outgoing.name, p.recipient, status, detail)
            )

    def _claim(self, p: _Pending) -> int | None:
        out, mail, ids = p.outgoing, self.store.mail, self.ids
        if p.record is not None:
            claimed = mail.claim_again(
                p.record.id, ids.run_id, from_statuses=p.retry_from, message_id=out.message_id
            )
            return p.record.id if claimed else None
        return mail.claim(
            ids.migration_id,
            ids.plan_id,
            ids.run_id,
            notice=out.notice,
            recipient=p.recipient,
            message_hash=out.digest,
            message_id=out.message_id,
            subject=out.subject,
        )

    def _crash_at(self, point: str, recipients: list[str]) -> None:
        victims = {f"{FAULT_PREFIX}{r}" for r in recipients}
        if self.fault and self.fault[1] == point and self.fault[0] in victims:
            raise InjectedCrash(f"{self.fault[0]}:{point}")

    def _pace(self) -> None:
        if self.interval and self.last is not None:
            time.sleep(max(0.0, self.last + self.interval - time.monotonic()))
        self.last = time.monotonic()

    def _send_one(self, group: list[_Pending]) -> None:
        """Claim each recipient of one message (the intent, committed), send, record."""
        claimed: dict[str, int] = {}
        for p in group:
            record_id = self._claim(p)
            if record_id is None:
                self._add([p], CLAIMED, "another run journaled it meanwhile: not sent twice")
            else:
                claimed[p.recipient] = record_id
        if not claimed:
            return
        recipients = list(claimed)
        self._crash_at(AFTER_INTENT, recipients)
        out = group[0].outgoing
        message = out.message
        # The .eml's Date is the day it was written; the mail says when it was sent.
        message.replace_header("Date", format_datetime(datetime.now(UTC)))
        self._pace()
        try:
            refused = self.server.send(message, self.sender, recipients)
        except ConnectionLost as err:
            status = UNKNOWN if err.maybe_sent else FAILED
            why = f"SMTP session lost: {err}"
            for record_id in claimed.values():
                self.store.mail.finish(record_id, status, why)
            self._add([p for p in group if p.recipient in claimed], status, why)
            raise
        self._crash_at(AFTER_CALL, recipients)
        for p in group:
            if p.recipient not in claimed:
                continue
            reply = refused.get(p.recipient)
            self.store.mail.finish(claimed[p.recipient], FAILED if reply else SENT, reply)
            self._add([p], FAILED if reply else SENT, f"refused: {reply}" if reply else _was(p))
            log.info("notice for %s to %s: %s", out.notice, p.recipient, reply or "sent")

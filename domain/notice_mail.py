"""Mailing the notices: the message of each notice, its identity, and its journal's records.

A notice's identity is its content: From, To, Subject and text, hashed (``message_digest``);
the Date and Message-ID of its ``.eml`` change each time notify writes it and are left out.
The same content is never mailed to a recipient twice; a changed notice (new dates, other
accounts) is a new one. Each recipient's delivery is journaled (``state.notice_mail``):
``sending`` before the SMTP transaction, then ``sent`` or ``failed``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path

# Journal statuses of one (notice content, recipient).
SENDING = "sending"  # the intent: written before the SMTP transaction
SENT = "sent"  # the server accepted the message for this recipient
FAILED = "failed"  # the server refused it (its reply is kept): a re-run tries again
# The transaction was cut off (the connection dropped before the server's reply): the
# server may or may not have taken the message. Like a SENDING row a dead run left behind.
UNKNOWN = "unknown"

# What a run does with a delivery whose outcome is not known (see engine.notice_mail).
REPORT_UNKNOWN = "report"
RESEND_UNKNOWN = "resend"
MARK_UNKNOWN_SENT = "mark-sent"
UNKNOWN_CHOICES = (REPORT_UNKNOWN, RESEND_UNKNOWN, MARK_UNKNOWN_SENT)


@dataclass(frozen=True)
class Outgoing:
    """One notice ready to mail: its message as written to its ``.eml`` file."""

    notice: str  # the identity-store user the notice is for
    name: str
    message: EmailMessage
    recipients: tuple[str, ...]  # bare addresses of To:
    digest: str

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")


@dataclass(frozen=True)
class MailRecord:
    """One journaled delivery: a notice's content to one recipient."""

    id: int
    plan_id: int
    run_id: int
    notice: str
    recipient: str
    message_hash: str
    message_id: str
    subject: str
    status: str
    error: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None


def message_digest(message: EmailMessage) -> str:
    """SHA-256 of what the person reads: From, To, Subject and the text."""
    parts = [str(message[h] or "") for h in ("From", "To", "Subject")]
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return hashlib.sha256("\n".join([*parts, "", text]).encode("utf-8")).hexdigest()


def read_outgoing(eml_file: Path, notice: str, name: str) -> Outgoing:
    """The notice's message, read back from the ``.eml`` file the notice writer wrote."""
    with eml_file.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)  # policy.default parses to EmailMessage
    addresses = [a for _, a in getaddresses([str(message["To"] or "")]) if "@" in a]
    return Outgoing(
        notice=notice,
        name=name,
        message=message,
        recipients=tuple(dict.fromkeys(addresses)),
        digest=message_digest(message),
    )

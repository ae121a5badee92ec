"""The SMTP adapter: one connection to ``[notify.smtp]``'s server, messages handed over one by one.

Stdlib ``smtplib``: ``starttls`` upgrades the connection before AUTH, ``ssl`` speaks TLS from
the first byte, ``none`` (the spec allows it to this machine only) speaks plain text. Each
transaction's outcome is told apart as the journal needs it (RFC 5321 §4.2, §6.1): a reply
refusing a recipient or the message means the server did not take it; a connection cut
before the reply to the message's final dot leaves it unknown whether the server took it.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Self

from domain.errors import MailError
from domain.notify_spec import NotifySmtp

log = logging.getLogger(__name__)


class ConnectionLost(Exception):
    """The session ended: ``maybe_sent`` when mid-transaction (the server may have taken the
    message), not when it was gone before the message's first command."""

    def __init__(self, message: str, *, maybe_sent: bool):
        super().__init__(message)
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class Credentials:
    """The SMTP AUTH user and password, read from the environment; never printed."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


class MailServer:
    """One SMTP session: connect (and log in) on enter, QUIT on exit.

    Args:
        settings: ``[notify.smtp]``.
        credentials: For AUTH; None: the relay takes mail without it.
    """

    def __init__(self, settings: NotifySmtp, credentials: Credentials | None):
        self.settings = settings
        self._credentials = credentials
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Self:
        s = self.settings
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            self._smtp = smtp
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self._credentials is not None:
                smtp.login(self._credentials.username, self._credentials.password)
        except smtplib.SMTPAuthenticationError as err:
            self._close()
            raise MailError(
                f"SMTP server {s.where()} refused the login of the user in the environment "
                f"variable {s.username_env}: {_reply(err.smtp_code, err.smtp_error)}; "
                "nothing was sent"
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            self._close()
            raise MailError(
                f"cannot open an SMTP session with {s.where()}: {err.__class__.__name__}: {err}; "
                "nothing was sent"
            ) from None
        return self

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> dict[str, str]:
        """Hand one message to the server for ``recipients``.

        Returns:
            {recipient: the server's reply} for each recipient it refused (empty: it took
            the message for all of them).

        Raises:
            ConnectionLost: The connection ended or timed out before the server's reply.
        """
        assert self._smtp is not None, "use MailServer as a context manager"
        if self._smtp.sock is None:
            # smtplib closes the session on a 421 reply (the server is shutting it down).
            raise ConnectionLost("the server closed the session", maybe_sent=False)
        try:
            refused = self._smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as err:
            return {r: _reply(code, text) for r, (code, text) in err.recipients.items()}
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
            # MAIL FROM or the message itself refused: nobody of this transaction got it.
            return dict.fromkeys(recipients, _reply(err.smtp_code, err.smtp_error))
        except (smtplib.SMTPServerDisconnected, OSError) as err:
            raise ConnectionLost(f"{err.__class__.__name__}: {err}", maybe_sent=True) from None
        return {r: _reply(code, text) for r, (code, text) in refused.items()}

    def _close(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError) as err:
                log.debug("SMTP QUIT failed: %s", err)
            self._close()

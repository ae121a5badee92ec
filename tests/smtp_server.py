"""A real SMTP server on 127.0.0.1 for the notices' mail tests (aiosmtpd), with AUTH and refusals.

It records every message it accepted (envelope sender, recipients, the parsed message, the
user that logged in), refuses the recipients in ``refuse`` at RCPT TO with a 550 reply, and
takes AUTH PLAIN/LOGIN in plain text (allowed to 127.0.0.1 only, as ``[notify.smtp]`` is).
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "iamc-mailer", "s3cret-Pa55-w0rd-for-tests"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 2.0.0 Ok: queued"


def _authenticate(server, session, envelope, mechanism, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == USER
        and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class LocalSmtp:
    """``with LocalSmtp(auth=True) as smtp:`` a server on ``smtp.port``; ``smtp.received``."""

    def __init__(self, *, auth: bool = False):
        self.handler = _Handler()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        options: dict[str, Any] = {}
        if auth:
            options = {
                "authenticator": _authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": on 127.0.0.1, as the spec allows.
            warnings.simplefilter("ignore", UserWarning)
            self._controller = Controller(
                self.handler, hostname="127.0.0.1", port=self.port, **options
            )

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def refuse(self) -> set[str]:
        return self.handler.refuse

    def to(self, address: str) -> list[Received]:
        """The messages the server took for ``address``."""
        return [r for r in self.received if address in r.rcpt_tos]

    def __enter__(self) -> LocalSmtp:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def smtp_table(port: int, *, auth: bool = False, extra: str = "") -> str:
    """A spec's ``[notify.smtp]`` for the local server (credentials' variable names only)."""
    names = 'username_env = "IAMC_TEST_SMTP_USER"\npassword_env = "IAMC_TEST_SMTP_PASSWORD"\n'
    return (
        f'[notify.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\ntimeout = 10\n'
        + (names if auth else "")
        + extra
    )

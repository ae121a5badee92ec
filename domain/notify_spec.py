"""The spec's ``[notify]`` table: what the notices say, and ``[notify.smtp]``, how they are sent.

The notices are always written (Markdown, ``.eml``, a CSV for mail merge); with
``[notify.smtp]`` and ``iamc notify --send`` they are also mailed. The spec names the
environment variables that hold the SMTP credentials, never the credentials themselves.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# POSIX environment variable names (IEEE Std 1003.1, 8.1): letters, digits, underscore.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Where an SMTP session without TLS can't be read on the way: this machine.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_SECRET_KEYS = ("password", "username", "user", "secret", "token")


class NotifySmtp(BaseModel):
    """``[notify.smtp]``: the mail server ``iamc notify --send`` hands the notices to.

    Attributes:
        host: The SMTP server (a relay, or the provider's submission endpoint).
        port: 587 (submission with STARTTLS) by default; 465 with ``security = "ssl"``.
        security: ``starttls`` (upgrade after connecting), ``ssl`` (TLS from the first byte)
            or ``none`` (plain text: only to this machine's own relay).
        username_env: The environment variable that holds the SMTP user name.
        password_env: The environment variable that holds the SMTP password.
        from_: ``from``: the envelope sender and From:; default ``[notify] sender``.
        timeout: Seconds to wait on the server at each step.
        max_per_minute: At most this many messages a minute (a relay's rate limit).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    from_: str | None = Field(default=None, alias="from")
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_the_spec(cls, data: Any) -> Any:
        # Checked on the whole table, not per field: a field's error would quote the value,
        # and a value here that is not a variable's name may be the secret itself.
        if not isinstance(data, dict):
            return data
        found = [k for k in _SECRET_KEYS if k in data]
        if found:
            raise ValueError(
                f"{found[0]!r}: the spec never holds SMTP credentials; put them in environment "
                "variables and name those with username_env and password_env"
            )
        for key in ("username_env", "password_env"):
            value = data.get(key)
            if value is not None and not (isinstance(value, str) and _ENV_NAME.match(value)):
                raise ValueError(
                    f"{key}: expected the name of an environment variable (letters, digits, "
                    "'_'), e.g. 'IAMC_SMTP_PASSWORD', not the credential itself"
                )
        return data

    @field_validator("security")
    @classmethod
    def _plain_only_to_this_machine(cls, value: str, info: ValidationInfo) -> str:
        host = str(info.data.get("host", "")).strip("[]").lower()
        if value == "none" and host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"security = 'none' sends mail (and credentials) unencrypted; it is only "
                f"allowed to {', '.join(LOOPBACK_HOSTS)}, not {host!r}: use 'starttls' "
                "(port 587) or 'ssl' (port 465)"
            )
        return value

    @model_validator(mode="after")
    def _both_credentials(self) -> NotifySmtp:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError(
                "username_env and password_env go together: name both variables, or neither "
                "for a relay that takes mail without AUTH"
            )
        return self

    def sender(self, default: str) -> str:
        """The envelope sender and From: of the mailed notices."""
        return self.from_ or default

    def where(self) -> str:
        """``host:port (security)``: where mail goes, for messages (no credentials)."""
        return f"{self.host}:{self.port} ({self.security})"


class Notify(BaseModel):
    """What the notices to migrated people say, and (``[notify.smtp]``) how they are mailed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The AWS access portal; default: https://<identity store id>.awsapps.com/start, the URL
    # Identity Center gives an instance without a custom alias.
    portal_url: str | None = None
    # Days between the notice and disabling the old IAM users (deletion follows bake_days on).
    notice_days: Annotated[int, Field(ge=0, le=365)] = 7
    sender: str = "iam-team@example.com"  # the From: of the .eml files
    out_dir: str = "notices"  # relative to the spec's directory
    # Only `iamc notify --send` (or the flow's send) mails; without it nothing is ever sent.
    smtp: NotifySmtp | None = None

    @property
    def mail_from(self) -> str:
        """The From: of the notices and their envelope sender: ``[notify.smtp] from``, else
        ``sender``."""
        return self.smtp.sender(self.sender) if self.smtp else self.sender

"""The spec's [notify.smtp]: where notices are mailed; credentials only by environment variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import SpecError
from domain.spec import load_spec

HEAD = 'name = "w"\n[notify]\nsender = "iam@example.com"\n[notify.smtp]\n'


def _load(tmp_path: Path, smtp: str):
    path = tmp_path / "spec.toml"
    path.write_text(HEAD + smtp)
    return load_spec(path)


def test_defaults_submission_with_starttls_and_the_notices_sender(tmp_path: Path):
    spec = _load(tmp_path, 'host = "smtp.example.com"\n')
    smtp = spec.notify.smtp
    assert (smtp.port, smtp.security, smtp.username_env, smtp.max_per_minute) == (
        587,
        "starttls",
        None,
        None,
    )
    assert spec.notify.mail_from == "iam@example.com"
    full = _load(
        tmp_path,
        'host = "smtp.example.com"\nport = 465\nsecurity = "ssl"\nfrom = "noreply@example.com"\n'
        'username_env = "SMTP_USER"\npassword_env = "SMTP_PASSWORD"\ntimeout = 5\n'
        "max_per_minute = 30\n",
    )
    assert full.notify.mail_from == "noreply@example.com"
    assert full.notify.smtp.where() == "smtp.example.com:465 (ssl)"
    assert load_spec(_write(tmp_path, 'name = "w"\n')).notify.smtp is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plain.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("smtp", "key", "expected"),
    [
        ('host = "smtp.example.com"\nsecurity = "none"\n', "notify.smtp.security", "unencrypted"),
        ('host = "smtp.example.com"\nsecurity = "tls"\n', "notify.smtp.security", "starttls"),
        ('host = "smtp.example.com"\nport = 0\n', "notify.smtp.port", "greater than"),
        ("port = 25\n", "notify.smtp.host", "required"),
        ('host = "h"\nusername_env = "U"\n', "notify.smtp", "go together"),
        ('host = "h"\nmax_per_minute = 0\n', "notify.smtp.max_per_minute", "greater than"),
        ('host = "h"\nsender = "x@example.com"\n', "notify.smtp.sender", "unknown key"),
    ],
)
def test_each_bad_field_is_named(tmp_path: Path, smtp: str, key: str, expected: str):
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, smtp)
    assert f"invalid migration spec: {key}: " in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_plain_text_only_to_this_machine(tmp_path: Path, host: str):
    spec = _load(tmp_path, f'host = "{host}"\nport = 25\nsecurity = "none"\n')
    assert spec.notify.smtp.security == "none"


def test_a_credential_in_the_spec_is_refused_without_being_repeated(tmp_path: Path):
    with pytest.raises(SpecError) as written:
        _load(tmp_path, 'host = "h"\npassword = "hunter2-secret"\n')
    assert "environment variables" in str(written.value)
    assert "hunter2-secret" not in str(written.value)
    with pytest.raises(SpecError) as misplaced:
        _load(tmp_path, 'host = "h"\nusername_env = "U"\npassword_env = "hunter2 secret!"\n')
    assert "notify.smtp: password_env: expected the name of an environment variable" in str(
        misplaced.value
    )
    assert "hunter2" not in str(misplaced.value)

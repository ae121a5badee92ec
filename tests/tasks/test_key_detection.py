"""Key detection over bytes: real keys found, look-alikes ignored with a reason, no secret kept."""

from __future__ import annotations

import dataclasses
import random

import pytest

from domain.key_findings import IgnoreReason, KeyHit, ScanResult, mask_key_id
from scanner.key_detection import (
    KeyDetector,
    classify_key_id,
    classify_secret,
    new_salt,
    secret_digest,
)

KEY_ID = "AKIAQ3EGRDZ5V7WKTJNM"
SECRET = "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"
OTHER_SECRET = "Zk3qP9vR2mW+xT4pLb8nY/cF3hJ6sD1gE5aU0oI2"
ENGINES = ["re", "hyperscan"]


@pytest.fixture(params=ENGINES)
def detector(request: pytest.FixtureRequest) -> KeyDetector:
    if request.param == "hyperscan":
        pytest.importorskip("hyperscan")
    return KeyDetector(salt=b"test-salt", engine=request.param)


def _no_secret_anywhere(records: list, *secrets: str) -> None:
    for record in records:
        text = " ".join([repr(record), str(record), *map(str, dataclasses.asdict(record).values())])
        for secret in secrets:
            assert secret not in text, record


def test_key_id_with_its_secret_on_the_next_line(detector: KeyDetector) -> None:
    data = f'x = 1\nAWS_ACCESS_KEY_ID = "{KEY_ID}"\nAWS_SECRET_ACCESS_KEY = "{SECRET}"\n'
    found = detector.scan(data.encode())
    assert [(h.key_id, h.line, h.secret_found) for h in found.hits] == [(KEY_ID, 2, True)]
    assert found.hits[0].secret_hash == secret_digest(b"test-salt", SECRET.encode())
    assert found.ignored == []
    _no_secret_anywhere(found.hits, SECRET)


def test_secret_a_few_lines_away_counts_far_away_does_not(detector: KeyDetector) -> None:
    near = f"id: {KEY_ID}\n\n\n\nsecret: {SECRET}\n"
    assert detector.scan(near.encode()).hits[0].secret_found
    far = f"id: {KEY_ID}\n" + "filler\n" * 10 + f"value: {SECRET}\n"
    hits = detector.scan(far.encode()).hits
    assert [(h.key_id, h.secret_found) for h in hits] == [(KEY_ID, False)]


@pytest.mark.parametrize(
    "line",
    [
        f"aws_secret_access_key = {SECRET}",
        f"export AWS_SECRET_ACCESS_KEY='{SECRET}'",
        f'secretKey: "{SECRET}"',
        f'"SecretAccessKey": "{SECRET}",',
        f"<SecretAccessKey>{SECRET}</SecretAccessKey>",
    ],
)
def test_secret_assigned_to_a_secret_looking_name(detector: KeyDetector, line: str) -> None:
    found = detector.scan(f"# config\n{line}\n".encode())
    assert [(h.key_id, h.line, h.secret_found) for h in found.hits] == [(None, 2, True)]
    assert found.hits[0].secret_hash == secret_digest(b"test-salt", SECRET.encode())
    _no_secret_anywhere(found.hits, SECRET)


def test_temporary_keys_and_several_keys_per_file(detector: KeyDetector) -> None:
    other = "ASIAZ7YQ5RMWQ2XKD3VB"
    data = f"a={KEY_ID}\n" + "-\n" * 20 + f"b={other}\nsecret_key={OTHER_SECRET}\n"
    found = detector.scan(data.encode())
    assert [(h.key_id, h.line, h.secret_found) for h in found.hits] == [
        (KEY_ID, 1, False),
        (other, 22, True),
    ]


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [
        ("key = AKIAIOSFODNN7EXAMPLE", "key-id", IgnoreReason.DOCUMENTATION_EXAMPLE),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "secret",
            IgnoreReason.DOCUMENTATION_EXAMPLE,
        ),
        ("key = AKIAXXXXXXXXXXXXXXXX", "key-id", IgnoreReason.LOW_ENTROPY),
        ("key = AKIAABCDEFGHIJKLMNOP", "key-id", IgnoreReason.LOW_ENTROPY),
        ("key = AKIA2222222233333333", "key-id", IgnoreReason.LOW_ENTROPY),
        (f"tag = BUILD{KEY_ID}", "key-id", IgnoreReason.INSIDE_WORD),
        (f"tag = {KEY_ID}SUFFIX", "key-id", IgnoreReason.INSIDE_WORD),
        (
            "secret_commit = 0123456789abcdef0123456789abcdef01234567",
            "secret",
            IgnoreReason.GIT_SHA,
        ),
        ("secret_token = abcdefghijklmnopqrstuvwxyzabcdefghijklmn", "secret", "low-entropy"),
    ],
)
def test_look_alikes_are_ignored_with_a_reason(
    detector: KeyDetector, text: str, kind: str, reason: str
) -> None:
    found = detector.scan(f"first line\n{text}\n".encode())
    assert found.hits == []
    assert [(i.kind, i.reason, i.line) for i in found.ignored] == [(kind, str(reason), 2)]


def test_git_sha_next_to_a_real_key_is_not_its_secret(detector: KeyDetector) -> None:
    data = f"key={KEY_ID}\ncommit=0123456789abcdef0123456789abcdef01234567\n"
    found = detector.scan(data.encode())
    assert [(h.key_id, h.secret_found) for h in found.hits] == [(KEY_ID, False)]
    assert [i.reason for i in found.ignored] == [IgnoreReason.GIT_SHA]


def test_placeholders_and_random_text_are_not_keys(detector: KeyDetector) -> None:
    rng = random.Random(5)
    noise = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefgh\n") for _ in range(200_000))
    data = f"{noise}\nAWS_ACCESS_KEY_ID=<AWS_ACCESS_KEY_ID>\nkey=AKIA...\nAKIA\n{noise}"
    found = detector.scan(data.encode())
    assert found.hits == []


def test_same_secret_same_hash_within_a_scan_not_across_salts() -> None:
    data = f"{KEY_ID}\n{SECRET}\n".encode()
    first, again = KeyDetector(b"one").scan(data), KeyDetector(b"one").scan(data)
    other = KeyDetector(b"two").scan(data)
    assert first.hits[0].secret_hash == again.hits[0].secret_hash
    assert first.hits[0].secret_hash != other.hits[0].secret_hash
    assert len(new_salt()) == 32 and new_salt() != new_salt()


def test_engines_agree_on_a_mixed_buffer() -> None:
    pytest.importorskip("hyperscan")
    rng = random.Random(9)
    parts = []
    for n in range(300):
        tail = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        parts.append(f"line {n} {rng.choice(['AKIA', 'ASIA', 'XAKIA'])}{tail} secret=x\n")
    data = "".join(parts).encode()
    by_re = KeyDetector(b"s", engine="re").scan(data)
    by_hyperscan = KeyDetector(b"s", engine="hyperscan").scan(data)
    assert by_re.hits == by_hyperscan.hits and by_re.hits
    assert by_re.ignored == by_hyperscan.ignored and by_re.ignored


def test_records_show_masked_key_ids_only() -> None:
    hit = KeyHit(KEY_ID, 3, True, "h" * 64, location="app.py:3")
    assert hit.key_id == KEY_ID  # whole in the field, for the inventory join
    for text in (str(hit), repr(hit), repr(ScanResult(hits=[hit]))):
        assert KEY_ID not in text
        assert mask_key_id(KEY_ID) in text
    assert mask_key_id(KEY_ID) == "AKIA…TJNM"


def test_classifiers_keep_random_keys() -> None:
    rng = random.Random(1)
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    ids = [("AKIA" + "".join(rng.choices(b32, k=16))).encode() for _ in range(2000)]
    secrets = ["".join(rng.choices(b64, k=40)).encode() for _ in range(2000)]
    assert sum(classify_key_id(i) is not None for i in ids) <= 1
    assert sum(classify_secret(s) is not None for s in secrets) <= 1
    assert repr(KeyDetector(b"salt")).count("salt") == 0


def test_hyperscan_compiles_in_the_background_from_the_detector_creation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command's first scan finds the database compiled, not ~60 ms of CPU in its way."""
    pytest.importorskip("hyperscan")
    import threading

    from scanner import key_detection

    engine = key_detection._HyperscanEngine
    monkeypatch.setattr(engine, "_compiled", None)
    monkeypatch.setattr(engine, "_compile_lock", threading.Lock())
    detector = KeyDetector(b"s", engine="hyperscan")
    compiling = [t for t in threading.enumerate() if t.name == "hyperscan-compile"]
    for thread in compiling:
        thread.join(timeout=30)
    assert engine._compiled is not None, "nothing compiled before the first scan"
    compiled = engine._compiled
    assert detector.scan(f"id = {KEY_ID}\n".encode()).hits
    assert engine._compiled is compiled  # compiled once

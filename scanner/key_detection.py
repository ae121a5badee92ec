"""Find AWS access key ids and secret access keys in bytes, without ever keeping a secret.

A fast engine finds candidates in one pass (Hyperscan when its wheel is installed, else the
standard library: ``re`` for key ids and ``bytes.find`` for secret-looking names); ``re``
then verifies each candidate and classifies look-alikes (documentation examples, low-entropy
placeholders, matches inside longer words, git SHAs) as ignored with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import math
import os
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from domain.key_findings import IgnoredHit, IgnoreReason, KeyHit

log = logging.getLogger(__name__)

# AKIA: long-term IAM user key; ASIA: temporary STS key; ABIA/ACCA: other AWS-issued ids that
# scanners match too (AWS_FACTS, "Access key formats"). The tail is AWS's base32 alphabet.
KEY_ID_PATTERN = rb"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}"
KEY_ID_LENGTH = 20
SECRET_LENGTH = 40
# How far around a key id a secret counts as "next to it": lines, and bytes (minified files
# have megabyte-long lines).
NEIGHBOUR_LINES = 4
NEIGHBOUR_BYTES = 4096

_KEY_ID_RE = re.compile(KEY_ID_PATTERN)
_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
# 40 secret characters not inside a longer run ('=' after it would be base64 padding of one).
_SECRET_RUN_RE = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")
# A secret-looking name (three spellings: a caseless literal halves Hyperscan's speed), an
# assignment of some syntax (=, :, =>, :=, a tuple's comma, an XML
# element's >), optional quotes, then exactly 40 secret characters.
_SECRET_ASSIGNMENT = (
    rb"(?:secret|Secret|SECRET)[A-Za-z0-9_.\-]{0,24}[\"']?\s{0,8}(?:=>|:=|=|:|,|>)\s{0,8}[\"']?"
    rb"[A-Za-z0-9+/]{40}"
)
_SECRET_ASSIGNMENT_RE = re.compile(
    _SECRET_ASSIGNMENT[: -len(rb"[A-Za-z0-9+/]{40}")] + rb"([A-Za-z0-9+/]{40})(?![A-Za-z0-9+/=])"
)
# What some line of a buffer must match for the detector to find anything in it: a prefilter
# listing the files in which one of these matches (ripgrep over a tree) never drops a file the
# detector would report. Line by line, because ripgrep is ~1.5x slower with --multiline: a
# secret assigned across a line break shows as its name, with or without the operator, at the
# end of a line. Hyperscan and Rust's regex (ripgrep) read these the same way.
CANDIDATE_PATTERNS = (
    KEY_ID_PATTERN.decode("ascii"),
    _SECRET_ASSIGNMENT.decode("ascii"),
    r"(?:secret|Secret|SECRET)[A-Za-z0-9_.\-]{0,24}[\"']?\s{0,8}(?:(?:=>|:=|=|:|,|>)\s*)?$",
)
_SECRET_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_HEX40_RE = re.compile(rb"[0-9a-f]{40}|[0-9A-F]{40}")
_BASE32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Random 40-character secrets carry ~4.7 bits per character; English-like identifiers < 4.2.
_MIN_SECRET_ENTROPY = 4.2


def new_salt() -> bytes:
    """A random per-scan salt for the secrets' HMAC (dedup within a scan, useless outside it)."""
    return secrets.token_bytes(32)


def secret_digest(salt: bytes, secret: bytes) -> str:
    """HMAC-SHA256 of a secret under the scan's salt (hex)."""
    return hmac.new(salt, secret, hashlib.sha256).hexdigest()


def _entropy(value: bytes) -> float:
    counts = Counter(value)
    total = len(value)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def _longest_run(value: bytes) -> int:
    best = run = 1
    for previous, current in itertools.pairwise(value):
        run = run + 1 if current == previous else 1
        best = max(best, run)
    return best


def _longest_sequence(value: bytes) -> int:
    """Longest run of consecutive characters of the base32 alphabet (ABCDEF…, 234567)."""
    best = run = 1
    for previous, current in itertools.pairwise(value):
        a, b = _BASE32.find(bytes([previous])), _BASE32.find(bytes([current]))
        run = run + 1 if a >= 0 and b == a + 1 else 1
        best = max(best, run)
    return best


def classify_key_id(key_id: bytes) -> str | None:
    """Why a pattern-matching key id is a look-alike (an IgnoreReason), or None if it is real.

    Random ids almost never trip these (a run of 5 equal characters: ~1e-5 per id); the
    inventory join may still promote an ignored id that turns out to be an inventory key.
    """
    if b"EXAMPLE" in key_id:
        return IgnoreReason.DOCUMENTATION_EXAMPLE
    tail = key_id[4:]
    if len(set(tail)) <= 5 or _longest_run(tail) >= 5 or _longest_sequence(tail) >= 6:
        return IgnoreReason.LOW_ENTROPY
    return None


def classify_secret(secret: bytes) -> str | None:
    """Why a 40-character candidate is not a secret access key (an IgnoreReason), or None."""
    if b"EXAMPLE" in secret.upper():
        return IgnoreReason.DOCUMENTATION_EXAMPLE
    if _HEX40_RE.fullmatch(secret):
        return IgnoreReason.GIT_SHA
    has_lower = any(97 <= c <= 122 for c in secret)
    has_upper = any(65 <= c <= 90 for c in secret)
    if not (has_lower and has_upper) or _entropy(secret) < _MIN_SECRET_ENTROPY:
        return IgnoreReason.LOW_ENTROPY
    return None


class _Engine(Protocol):
    name: str

    def candidates(self, data: bytes | memoryview) -> tuple[list[int], list[int]]:
        """(start offsets of key-id matches, start offsets of 40-character values assigned
        to a secret-looking name)."""
        ...


class _StdlibEngine:
    """``re`` for key ids (sre skips ahead to each 'A'), ``bytes.find`` for secret names."""

    name = "re"

    def candidates(self, data: bytes | memoryview) -> tuple[list[int], list[int]]:
        data = bytes(data)
        ids = [m.start() for m in _KEY_ID_RE.finditer(data)]
        values: set[int] = set()
        for literal in (b"ecret", b"ECRET"):  # secret, Secret, SECRET, aws_secret…, secretKey
            at = data.find(literal, 1)
            while at != -1:
                if data[at - 1] in b"sS":
                    match = _SECRET_ASSIGNMENT_RE.match(data, at - 1, at + 160)
                    if match is not None:
                        values.add(match.start(1))
                at = data.find(literal, at + 1)
        return ids, sorted(values)


class _HyperscanEngine:
    """Hyperscan: key ids and secret assignments in one pass (~3-4 GB/s per core here)."""

    name = "hyperscan"
    # One compiled database per process (compiling takes ~60 ms of CPU); scratch space is per
    # thread ("a scratch region may not be used by more than one hs_scan() call at a time",
    # Hyperscan's hs_alloc_scratch documentation).
    _compiled = None
    _compile_lock = threading.Lock()

    def __init__(self) -> None:
        import hyperscan

        self._hyperscan = hyperscan
        self._local = threading.local()
        if type(self)._compiled is None:
            # Compiled in the background from the detector's creation (hs_compile releases
            # the GIL): a command's first scan comes after its walk, its ripgrep start or its
            # AWS calls, by when the compile is done instead of added to the wait. Not a
            # daemon: the thread is never cut off inside Hyperscan at exit.
            threading.Thread(target=self._database, name="hyperscan-compile").start()

    def _database(self):
        engine = type(self)
        with engine._compile_lock:
            if engine._compiled is None:
                hs = self._hyperscan
                db = hs.Database(mode=hs.HS_MODE_BLOCK)
                # The whole assignment, not just "secret": the word is common in code and a
                # Python callback per occurrence would cost more than the scan itself.
                db.compile(
                    expressions=[KEY_ID_PATTERN, _SECRET_ASSIGNMENT],
                    ids=[0, 1],
                    elements=2,
                    flags=[0, 0],
                )
                engine._compiled = db
            return engine._compiled

    def _scratch(self, db):
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hyperscan.Scratch(db)
        return scratch

    def candidates(self, data: bytes | memoryview) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        values: set[int] = set()
        size = len(data)

        def on_match(pattern: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            if pattern == 0:
                ids.append(end - KEY_ID_LENGTH)
            elif end >= size or (data[end] not in _SECRET_CHARS and data[end] != 61):  # "="
                values.add(end - SECRET_LENGTH)  # exactly 40 characters, as re's lookahead

        if data:
            db = self._database()
            db.scan(data, match_event_handler=on_match, scratch=self._scratch(db))
        return ids, sorted(values)


def _forget_compile_lock() -> None:
    # A child forked while another thread compiled would inherit the lock held, forever.
    _HyperscanEngine._compile_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_compile_lock)


def _make_engine(name: str) -> _Engine:
    if name in ("auto", "hyperscan"):
        try:
            return _HyperscanEngine()
        except ImportError:
            if name == "hyperscan":
                raise
            log.info("hyperscan is not installed: key detection uses the re engine")
    return _StdlibEngine()


class _Lines:
    """Line numbers of increasing offsets without recounting from the start each time."""

    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0
        self.line = 1

    def line_of(self, offset: int) -> int:
        if offset < self.offset:
            self.offset, self.line = 0, 1
        self.line += self.data.count(b"\n", self.offset, offset)
        self.offset = offset
        return self.line


def _neighbourhood(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Byte range of NEIGHBOUR_LINES lines either side of data[start:end], clipped."""
    low_limit = max(0, start - NEIGHBOUR_BYTES)
    low = start
    for _ in range(NEIGHBOUR_LINES + 1):
        at = data.rfind(b"\n", low_limit, low)
        if at == -1:
            low = low_limit
            break
        low = at
    high_limit = min(len(data), end + NEIGHBOUR_BYTES)
    high = end
    for _ in range(NEIGHBOUR_LINES + 1):
        at = data.find(b"\n", high, high_limit)
        if at == -1:
            high = high_limit
            break
        high = at + 1
    return low, high


@dataclass
class Detection:
    """What one buffer holds: hits and ignored look-alikes, located by line only."""

    hits: list[KeyHit] = field(default_factory=list)
    ignored: list[IgnoredHit] = field(default_factory=list)


class KeyDetector:
    """Detects key ids and secrets in bytes. One per scan: it holds the scan's salt.

    Args:
        salt: Salt of the secrets' HMAC; a new random one when omitted (so hashes only
            deduplicate within one scan). Pass the same salt to every worker of a scan.
        engine: "auto" (Hyperscan if installed, else re), "hyperscan" or "re".
    """

    def __init__(self, salt: bytes | None = None, engine: str = "auto"):
        self.salt = salt if salt is not None else new_salt()
        self._engine = _make_engine(engine)

    @property
    def engine(self) -> str:
        return self._engine.name

    def __repr__(self) -> str:
        return f"KeyDetector(engine={self.engine!r})"  # never the salt

    def scan(self, data: bytes | memoryview) -> Detection:
        """Find key ids, their neighbouring secrets, and secrets assigned to secret-looking names.

        Args:
            data: The text to scan (any encoding that keeps ASCII as ASCII); a memoryview is
                matched in place and copied only when it holds a candidate.

        Returns:
            Hits and ignored look-alikes with 1-based line numbers; the caller adds where.
        """
        id_starts, value_starts = self._engine.candidates(data)
        found = Detection()
        if not id_starts and not value_starts:
            return found
        data = bytes(data)
        lines = _Lines(data)
        used_secrets: set[int] = set()  # start offsets of secrets already tied to a key id
        reported_secrets: set[int] = set()  # …and of look-alikes already reported
        for start in sorted(set(id_starts)):
            end = start + KEY_ID_LENGTH
            key_id = data[start:end]
            line = lines.line_of(start)
            if (start > 0 and data[start - 1] in _ALNUM) or (
                end < len(data) and data[end] in _ALNUM
            ):
                reason: str | None = IgnoreReason.INSIDE_WORD
            else:
                reason = classify_key_id(key_id)
            text_id = key_id.decode("ascii")
            if reason is not None:
                found.ignored.append(IgnoredHit("key-id", str(reason), line, key_id=text_id))
                continue
            secret_at = self._secret_near(data, start, end, used_secrets, reported_secrets, found)
            digest = None
            if secret_at is not None:
                used_secrets.add(secret_at)
                digest = secret_digest(self.salt, data[secret_at : secret_at + SECRET_LENGTH])
            found.hits.append(KeyHit(text_id, line, secret_at is not None, digest))
        self._assigned_secrets(data, value_starts, used_secrets, reported_secrets, found)
        found.hits.sort(key=lambda hit: hit.line)
        found.ignored.sort(key=lambda hit: hit.line)
        return found

    def _secret_near(
        self,
        data: bytes,
        start: int,
        end: int,
        used: set[int],
        reported: set[int],
        found: Detection,
    ) -> int | None:
        low, high = _neighbourhood(data, start, end)
        best: int | None = None
        for match in _SECRET_RUN_RE.finditer(data, low, high):
            at = match.start()
            if at in used:
                continue
            reason = classify_secret(match.group())
            if reason is not None:
                if at not in reported:
                    reported.add(at)
                    line = data.count(b"\n", 0, at) + 1
                    found.ignored.append(IgnoredHit("secret", str(reason), line))
                continue
            # Prefer the nearest candidate; on a tie, the one after the key id.
            if best is None or abs(at - start) < abs(best - start):
                best = at
        return best

    def _assigned_secrets(
        self,
        data: bytes,
        value_starts: list[int],
        used: set[int],
        reported: set[int],
        found: Detection,
    ) -> None:
        lines = _Lines(data)
        for at in value_starts:
            if at in used or at in reported:
                continue
            secret = data[at : at + SECRET_LENGTH]
            reason = classify_secret(secret)
            line = lines.line_of(at)
            if reason is not None:
                reported.add(at)
                found.ignored.append(IgnoredHit("secret", str(reason), line))
                continue
            used.add(at)
            found.hits.append(KeyHit(None, line, True, secret_digest(self.salt, secret)))

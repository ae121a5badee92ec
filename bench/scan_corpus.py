"""The key-scan benchmark's data: a mixed tree and a git history with planted keys and decoys."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.key_detection import classify_key_id, classify_secret

MB = 1_000_000
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Code-like vocabulary. Words a scanner must look twice at ("secret", "AKIA") are kept to
# the rare config lines below, as in real code: a corpus where every 20th word is "secret"
# slows Hyperscan's confirmation of the assignment pattern to ~400 MB/s.
_VOCABULARY = """
self return import from def class if else elif for while try except finally with as
yield lambda None True False config client session bucket region account user policy role
token value name key items data result error logger request response handler event context
Access Control Allow Origin Content Type AWS_REGION us-east-1 eu-west-1 arn:aws:iam::
s3://acme-data/ 0 1 2 42 1024 const let var function => async await new this map filter
reduce push length string number boolean object Promise resolve reject console log info
warn debug timeout retries max_attempts paginator get_paginator paginate page items append
extend update dict list tuple set int str bytes len range enumerate zip sorted reversed
HTTPStatusCode ResponseMetadata Metadata Tags Key Value Arn Name Id Status Active Inactive
"""
WORDS = tuple(_VOCABULARY.split())
SECRETISH_LINES = (
    'secret_name = "prod/app/db"',
    'client = boto3.client("secretsmanager")',
    'value = client.get_secret_value(SecretId=secret_name)["SecretString"]',
)


@dataclass
class Planted:
    key_id: str
    where: str  # relative path (or archive!member) the hit's location must start with
    with_secret: bool
    history_only: bool = False


@dataclass
class Corpus:
    rng: random.Random
    text: str = ""
    planted: list[Planted] = field(default_factory=list)
    decoys: list[str] = field(default_factory=list)  # paths holding only decoys

    def __post_init__(self) -> None:
        lines = []
        size = 0
        while size < 4 * MB:
            indent = " " * self.rng.choice((0, 4, 8, 12))
            words = self.rng.choices(WORDS, k=self.rng.randint(3, 14))
            line = indent + " ".join(words)
            if self.rng.random() < 0.005:
                line = indent + self.rng.choice(SECRETISH_LINES)
            if self.rng.random() < 0.03:  # base64 blobs, hashes: high-entropy noise
                # (not 40 long after a secret-looking word: that would be a real finding)
                line += ' = "' + "".join(self.rng.choices(B64, k=self.rng.choice((32, 64, 88))))
                line += '"'
            lines.append(line)
            size += len(line) + 1
        self.text = "\n".join(lines) + "\n"

    def slice(self, size: int) -> str:
        start = self.rng.randrange(0, len(self.text) - size - 1)
        start = self.text.find("\n", start) + 1
        return self.text[start : start + size]

    def key(self) -> tuple[str, str]:
        while True:
            key_id = "AKIA" + "".join(self.rng.choices(B32, k=16))
            secret = "".join(self.rng.choices(B64, k=40))
            if (
                classify_key_id(key_id.encode()) is None
                and classify_secret(secret.encode()) is None
            ):
                return key_id, secret

    def decoy_lines(self) -> list[str]:
        tail = "".join(self.rng.choices(B32, k=16))
        sha = "".join(self.rng.choices("0123456789abcdef", k=40))
        return [
            'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"',
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "access_key: AKIAXXXXXXXXXXXXXXXX  # placeholder",
            "AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP",
            f"build_id = BUILDAKIA{tail}",
            f'secret_commit = "{sha}"',
        ]


def _with_lines(body: str, extra: list[str], rng: random.Random) -> str:
    lines = body.split("\n")
    at = rng.randrange(0, max(1, len(lines) - 1))
    return "\n".join(lines[:at] + extra + lines[at:])


def _key_lines(key_id: str, secret: str, with_secret: bool, style: int) -> list[str]:
    if style == 0:
        lines = [f'AWS_ACCESS_KEY_ID = "{key_id}"']
        if with_secret:
            lines.append(f'AWS_SECRET_ACCESS_KEY = "{secret}"')
    elif style == 1:
        lines = [f"    access_key: {key_id}"]
        if with_secret:
            lines.append(f"    secret_key: {secret}")
    else:
        lines = [f'client = boto3.client("s3", aws_access_key_id="{key_id}",']
        if with_secret:
            lines.append(f'    aws_secret_access_key="{secret}")')
    return lines


def generate_tree(root: Path, size_mb: int, seed: int) -> tuple[Corpus, dict[str, int]]:
    """Mixed content of about size_mb MB: text 46%, minified JS 20%, binary 29%, archives 5%."""
    rng = random.Random(seed)
    corpus = Corpus(rng)
    target = size_mb * MB
    budget = {"text": 0.46, "minified-js": 0.20, "binary": 0.29, "archive": 0.05}
    written = dict.fromkeys(budget, 0)
    n = 0

    def write(relative: str, data: bytes, kind: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[kind] += len(data)

    def plant(relative: str, body: str, style: int) -> str:
        key_id, secret = corpus.key()
        with_secret = rng.random() < 0.7
        corpus.planted.append(Planted(key_id, relative, with_secret))
        return _with_lines(body, _key_lines(key_id, secret, with_secret, style), rng)

    while written["text"] < target * budget["text"]:
        n += 1
        ext = rng.choice(("py", "js", "yaml", "tf", "json", "md", "sh", "cfg", ""))
        relative = f"src/pkg{n % 40}/mod{n}{'.' + ext if ext else ''}"
        body = corpus.slice(rng.randint(4_000, 80_000))
        if n % 97 == 0:
            body = plant(relative, body, n % 3)
        elif n % 89 == 0:
            body = _with_lines(body, corpus.decoy_lines(), rng)
            corpus.decoys.append(relative)
        if n % 211 == 0:  # an ignored-looking dotfile with a key
            env = f"svc{n}/.env"
            key_id, secret = corpus.key()
            corpus.planted.append(Planted(key_id, env, True))
            write(
                env,
                f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n".encode(),
                "text",
            )
        write(relative, body.encode(), "text")
    while written["minified-js"] < target * budget["minified-js"]:
        n += 1
        relative = f"web/dist/bundle{n}.min.js"
        body = corpus.slice(rng.randint(200_000, 2_000_000)).replace("\n", ";").replace("    ", "")
        if n % 7 == 0:
            key_id, secret = corpus.key()
            corpus.planted.append(Planted(key_id, relative, True))
            cut = rng.randrange(0, len(body))
            pair = f'var c={{accessKeyId:"{key_id}",secretAccessKey:"{secret}"}}'
            body = f"{body[:cut]};{pair};{body[cut:]}"
        write(relative, body.encode(), "minified-js")
    while written["binary"] < target * budget["binary"]:
        n += 1
        relative = f"assets/blob{n}.{rng.choice(('png', 'so', 'bin', 'dat', 'txt'))}"
        data = bytearray(rng.randbytes(rng.randint(64_000, 6_000_000)))
        data[100] = 0  # binary by content: a NUL in the first block
        write(relative, bytes(data), "binary")
    while written["archive"] < target * budget["archive"]:
        n += 1
        kind = rng.choice(("zip", "jar", "tar.gz"))
        relative = f"dist/release{n}.{kind}"
        members: dict[str, bytes] = {}
        for m in range(rng.randint(3, 12)):
            name = f"app/conf{m}.properties"
            body = corpus.slice(rng.randint(2_000, 60_000))
            if m == 1 and n % 3 == 0:
                body = plant(f"{relative}!{name}", body, 1)
            members[name] = body.encode()
            members[f"app/lib{m}.bin"] = b"\0" + rng.randbytes(rng.randint(2_000, 50_000))
        write(relative, _archive(kind, members), "archive")
    return corpus, written


def _archive(kind: str, members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    if kind == "tar.gz":
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
            for name, content in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mtime = 1_700_000_000
                archive.addfile(info, io.BytesIO(content))
    else:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in members.items():
                archive.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def generate_repo(root: Path, commits: int, seed: int) -> list[Planted]:
    """A repository built with ``git fast-import``: commits touching a few files each, keys
    added and removed again (history only), one kept, one on a tag only."""
    rng = random.Random(seed + 1)
    corpus = Corpus(rng)
    planted: list[Planted] = []
    root.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    _git(["init", "-q", "-b", "main", str(root)], env=env)
    stream = io.BytesIO()

    def data(payload: bytes) -> None:
        stream.write(b"data %d\n" % len(payload) + payload + b"\n")

    files = [f"src/module{i}.py" for i in range(150)]
    removals: dict[int, str] = {}
    for number in range(1, commits + 1):
        stream.write(b"commit refs/heads/main\nmark :%d\n" % number)
        stream.write(b"committer Dev <dev@example.com> %d +0000\n" % (1_700_000_000 + number * 600))
        data(f"change {number}".encode())
        touched = files if number == 1 else rng.sample(files, rng.randint(1, 3))
        for path in touched:
            stream.write(f"M 100644 inline {path}\n".encode())
            data(corpus.slice(rng.randint(3_000, 40_000)).encode())
        if number % 100 == 50:  # a key committed, removed three commits later
            key_id, secret = corpus.key()
            path = f"config/keys_{number}.py"
            body = "\n".join(_key_lines(key_id, secret, True, number % 3)) + "\n"
            stream.write(f"M 100644 inline {path}\n".encode())
            data(body.encode())
            removals[number + 3] = path
            planted.append(Planted(key_id, path, True, history_only=True))
        if number % 250 == 125:
            path = f"docs/setup_{number}.md"
            stream.write(f"M 100644 inline {path}\n".encode())
            data("\n".join(corpus.decoy_lines()).encode())
        if number in removals:
            stream.write(f"D {removals.pop(number)}\n".encode())
        if number == commits // 2:
            key_id, secret = corpus.key()
            stream.write(b"M 100644 inline deploy/settings.env\n")
            data(f"AWS_ACCESS_KEY_ID={key_id}\n".encode())
            planted.append(Planted(key_id, "deploy/settings.env", False))
        stream.write(b"\n")
    # One more commit reachable from a tag only.
    key_id, _ = corpus.key()
    stream.write(b"commit refs/tags/experiment\nmark :%d\n" % (commits + 1))
    stream.write(b"committer Dev <dev@example.com> 1800000000 +0000\n")
    data(b"experiment")
    stream.write(b"from :%d\nM 100644 inline experiment.cfg\n" % commits)
    data(f"key={key_id}\n".encode())
    planted.append(Planted(key_id, "experiment.cfg", False, history_only=True))
    _git(["-C", str(root), "fast-import", "--quiet"], input=stream.getvalue(), env=env)
    _git(["-C", str(root), "checkout", "-q", "main"], env=env)
    return planted


def _git(args: list[str], **kwargs: Any) -> None:
    # git from PATH, as a developer runs it, with arguments built here, never from input.
    subprocess.run(["git", *args], check=True, **kwargs)  # noqa: S603, S607

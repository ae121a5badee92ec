"""Sample files with keys planted for the key scan: a working tree, a zip bundle, git history."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from domain.errors import SandboxError
from sandbox.seed_context import Seeding, plant
from sandbox.seed_manifest import SeedManifest

log = logging.getLogger(__name__)

# A documentation key id every scanner must ignore (AWS's own example key).
FALSE_POSITIVE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
# …and its example secret (published by AWS, not a credential).
FALSE_POSITIVE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105
# Marks a samples directory's .git as ours, so a re-seed may replace it (never anyone else's).
SAMPLES_GIT_MARKER = "iamc-sandbox-samples"
# The GitHub repository the samples come from (their git remote ``origin``): a key scan finding
# in them names it, which is how the GitHub Actions workload learns its repository.
SAMPLES_REPOSITORY = "acme/platform-app"


def write_samples(seeding: Seeding, manifest: SeedManifest, samples_dir: Path) -> None:
    """Sample code with a hard-coded key, for the key scanner to find (on purpose)."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    key_id = manifest.sample_key_id
    secret = seeding.sample_secret
    warning = (
        "SANDBOX ONLY: a deliberately planted, fake moto credential of IAM user "
        f"{manifest.sample_key_user} in sandbox account {manifest.sample_key_account}."
    )
    (samples_dir / "upload_reports.py").write_text(
        f'"""Uploads nightly reports. {warning}"""\n\n'
        "import boto3\n\n"
        f'AWS_ACCESS_KEY_ID = "{key_id}"\n'
        f'AWS_SECRET_ACCESS_KEY = "{secret}"  # planted sandbox secret, not real\n'
        "# From the AWS docs, a known false positive:\n"
        f'EXAMPLE_KEY_ID = "{FALSE_POSITIVE_KEY_ID}"\n\n'
        "s3 = boto3.client(\n"
        '    "s3", aws_access_key_id=AWS_ACCESS_KEY_ID, '
        "aws_secret_access_key=AWS_SECRET_ACCESS_KEY\n"
        ")\n"
    )
    (samples_dir / ".env").write_text(
        f"# {warning}\nAWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
        "AWS_DEFAULT_REGION=us-east-1\n"
    )
    (samples_dir / "main.tf").write_text(
        f"# {warning}\n"
        'provider "aws" {\n'
        '  region     = "us-east-1"\n'
        f'  access_key = "{key_id}"\n'
        f'  secret_key = "{secret}"\n'
        "}\n\n"
        "# Documentation example, not a real key:\n"
        f'# access_key = "{FALSE_POSITIVE_KEY_ID}"\n'
    )
    (samples_dir / "README.txt").write_text(
        f"{warning}\nThe key ids in these files are meant to be found by `iamc` key scans; "
        f"{FALSE_POSITIVE_KEY_ID} is AWS's documentation example and must be ignored.\n"
    )
    sample = (manifest.sample_key_account or "", manifest.sample_key_user or "", key_id or "")
    for name in ("upload_reports.py", ".env", "main.tf"):
        plant(
            manifest,
            sample,
            "working-tree",
            _where(samples_dir, samples_dir / name, key_id or ""),
        )
    _sample_decoys(seeding, manifest, samples_dir)
    _sample_workflow(seeding, manifest, samples_dir, warning)
    _sample_bundle(seeding, manifest, samples_dir, warning)
    _sample_repository(seeding, manifest, samples_dir, warning)


def _sample_decoys(seeding: Seeding, manifest: SeedManifest, samples_dir: Path) -> None:
    """Look-alikes a scanner must not report: documentation examples, placeholders, a key
    id inside a longer word, a git SHA where a secret would be."""
    tail = "".join(seeding.plant_rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    sha = "".join(seeding.plant_rng.choice("0123456789abcdef") for _ in range(40))
    docs = samples_dir / "docs"
    docs.mkdir(exist_ok=True)
    path = docs / "aws-setup.md"
    path.write_text(
        "# Setting up AWS credentials\n\n"
        "Never commit a key. The AWS documentation's example profile looks like this:\n\n"
        "    [default]\n"
        f"    aws_access_key_id = {FALSE_POSITIVE_KEY_ID}\n"
        f"    aws_secret_access_key = {FALSE_POSITIVE_SECRET}\n\n"
        "Templates use a placeholder: `AKIAXXXXXXXXXXXXXXXX` or `<AWS_ACCESS_KEY_ID>`.\n"
        f"A build tag is not a key: BUILDAKIA{tail}X\n"
        f'secret_commit = "{sha}"  # the release commit, not a secret\n'
    )
    for value, kind, why in (
        (FALSE_POSITIVE_KEY_ID, "key-id", "aws-documentation-example"),
        (FALSE_POSITIVE_SECRET, "secret", "aws-documentation-example"),
        ("AKIAXXXXXXXXXXXXXXXX", "key-id", "low-entropy"),
        (f"AKIA{tail}", "key-id", "inside-a-longer-word"),
        (sha, "secret", "40-hex-git-sha"),
    ):
        manifest.decoys.append(
            {"where": _where(samples_dir, path, value), "kind": kind, "why": why}
        )


def _sample_workflow(
    seeding: Seeding, manifest: SeedManifest, samples_dir: Path, warning: str
) -> None:
    """A GitHub Actions workflow with ci-deployer's key pasted in (instead of a secret or,
    better, an OIDC role): the key scan places ci-deployer in this repository's pipeline."""
    key = next(
        (k for k in seeding.workload_keys if k[1] == "ci-deployer"),
        (manifest.sample_key_account or "", manifest.sample_key_user or "", ""),
    )
    if not key[2]:
        return
    workflows = samples_dir / ".github" / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    path = workflows / "deploy.yml"
    path.write_text(
        f"# {warning}\n"
        "name: deploy\n"
        "on:\n"
        "  push:\n"
        "    branches: [main]\n"
        "jobs:\n"
        "  deploy:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - uses: aws-actions/configure-aws-credentials@v4\n"
        "        with:\n"
        f"          aws-access-key-id: {key[2]}\n"
        f"          aws-secret-access-key: {seeding.fake_secret()}\n"
        "          aws-region: us-east-1\n"
        "      - run: aws ecr get-login-password | docker login --username AWS "
        "--password-stdin $ECR_REGISTRY\n"
        "      - run: aws cloudformation deploy --template-file stack.yml --stack-name app\n"
    )
    plant(manifest, key, "working-tree", _where(samples_dir, path, key[2]))


def _sample_bundle(
    seeding: Seeding, manifest: SeedManifest, samples_dir: Path, warning: str
) -> None:
    """A deploy bundle (zip) with a key in a properties file."""
    key = seeding.workload_key(3, manifest.sample_key_account or "")
    member = "config/credentials.properties"
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        # A fixed date keeps the zip's bytes, and so the seed, deterministic.
        info = zipfile.ZipInfo(member, date_time=(2024, 1, 2, 3, 4, 5))
        archive.writestr(
            info,
            f"# {warning}\naws.accessKeyId={key[2]}\naws.secretKey={seeding.fake_secret()}\n",
        )
        archive.writestr(zipfile.ZipInfo("app.js", (2024, 1, 2, 3, 4, 5)), "main();\n")
    (samples_dir / "build").mkdir(exist_ok=True)
    (samples_dir / "build" / "deploy-bundle.zip").write_bytes(bundle.getvalue())
    plant(manifest, key, "archive", f"build/deploy-bundle.zip!{member}:2")


def _sample_repository(
    seeding: Seeding, manifest: SeedManifest, samples_dir: Path, warning: str
) -> None:
    """Make the samples a git repository whose history holds a key removed since, with the
    ``.env`` git-ignored (a scan must read it anyway)."""
    git_dir = samples_dir / ".git"
    if git_dir.exists():
        if not (git_dir / SAMPLES_GIT_MARKER).exists():
            log.warning("%s is not the sandbox's repository: no sample history", git_dir)
            return
        shutil.rmtree(git_dir)
    key = seeding.workload_key(2, manifest.accounts[-1].account_id)
    settings = samples_dir / "config" / "settings.py"
    settings.parent.mkdir(exist_ok=True)
    (samples_dir / ".gitignore").write_text(".env\nseed-manifest.json\n")
    settings.write_text(
        f'"""Exporter settings. {warning}."""\n\n'
        f'AWS_ACCESS_KEY_ID = "{key[2]}"\n'
        f'AWS_SECRET_ACCESS_KEY = "{seeding.fake_secret()}"\n'
    )
    where = _where(samples_dir, settings, key[2])
    try:
        _git(samples_dir, "init", "--quiet", "--initial-branch=main")
        _git(samples_dir, "remote", "add", "origin", f"https://github.com/{SAMPLES_REPOSITORY}.git")
        (git_dir / SAMPLES_GIT_MARKER).write_text("written by iamc sandbox seeding\n")
        _git(samples_dir, "add", "--all")
        _git(samples_dir, "commit", "--quiet", "-m", "Add the report exporter", day=1)
        settings.write_text(
            '"""Exporter settings: credentials come from the environment (role)."""\n\n'
            "import os\n\n"
            'AWS_REGION = os.environ.get("AWS_REGION", "us-east-1")\n'
        )
        _git(samples_dir, "commit", "--quiet", "--all", "-m", "Drop the key", day=2)
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("no sample git history (git failed: %s)", err)
        return
    plant(manifest, key, "git-history", where, history_only=True)


def _git(cwd: Path, *args: str, day: int = 0) -> None:
    # Fixed identity and dates, no user or system config: the same seed, the same commits.
    date = f"2024-01-{day + 1:02d}T09:00:00+00:00"
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "ACME Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "ACME Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
    }
    subprocess.run(  # noqa: S603 - git with fixed arguments
        ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
    )


def _where(root: Path, path: Path, needle: str) -> str:
    """``relative/path:line`` of the first line of a written sample that holds ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return f"{path.relative_to(root).as_posix()}:{number}"
    raise SandboxError(f"{needle!r} is not in {path}")

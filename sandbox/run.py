"""``iamc sandbox up``: serve a seeded sandbox in the foreground until interrupted."""

from __future__ import annotations

import logging
import shlex
import threading
from pathlib import Path

import boto3
from rich.console import Console
from rich.table import Table

from sandbox.seed import seed_organization
from sandbox.seed_manifest import SeedManifest
from sandbox.server import Sandbox

log = logging.getLogger(__name__)


def up(
    accounts: int,
    users_per_account: int,
    seed: int,
    port: int,
    empty: bool,
    samples_dir: Path | None,
    console: Console,
    central: bool = False,
) -> None:
    """Start the sandbox on 127.0.0.1:port, seed it, print a summary and the shell exports,
    then serve until Ctrl-C (KeyboardInterrupt), and stop cleanly.

    Raises:
        SandboxError: The port is taken or seeding failed.
    """
    sandbox = Sandbox(host="127.0.0.1", port=port)
    sandbox.start()
    try:
        # Same seed, same ids: moto draws every id from this one random source.
        sandbox.reset(seed=seed)
        env = sandbox.env()
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        with console.status("Seeding the sandbox organization…"):
            manifest = seed_organization(
                session,
                accounts=accounts,
                users_per_account=users_per_account,
                seed=seed,
                empty=empty,
                samples_dir=samples_dir,
                endpoint_url=sandbox.url,
                central=central,
            )
        if sandbox.middleware is not None:
            sandbox.middleware.manifest = manifest.to_dict()
            sandbox.middleware.recorder.reset()  # count only what the user's tools do
        print_summary(console, manifest, samples_dir)
        console.print("\n[bold]Point a shell at the sandbox:[/bold]")
        for name, value in env.items():
            console.print(f"export {name}={shlex.quote(value)}", highlight=False, soft_wrap=True)
        console.print(
            f"\nControl: {sandbox.url}/_iamc/calls, /_iamc/config; Ctrl-C stops the sandbox."
        )
        threading.Event().wait()  # serve until interrupted
    except KeyboardInterrupt:
        console.print("stopping the sandbox")
    finally:
        sandbox.stop()


def print_summary(console: Console, manifest: SeedManifest, samples_dir: Path | None) -> None:
    """A table of seeded accounts with users by expected class, then totals by kind."""
    classes = ("human", "workload", "unused", "protected")
    table = Table(title=f"Sandbox organization {manifest.organization_id} (seed {manifest.seed})")
    for column in ("Account", "Name", "OU", "Status", "Users", *classes):
        table.add_column(column, justify="right" if column in (*classes, "Users") else "left")
    table.add_row(manifest.management_account_id, "management", "root", "ACTIVE", "0", *"----")
    for account in manifest.accounts:
        counts = account.counts_by_class()
        table.add_row(
            account.account_id,
            account.name,
            account.ou,
            account.status,
            str(len(account.users)),
            *(str(counts.get(c, 0)) for c in classes),
        )
    console.print(table)
    if manifest.central_account:
        console.print(
            f"Central identity account: {manifest.central_account} "
            f"({len(manifest.central_users)} people as IAM users, each with an MFA device)"
        )
    console.print(
        f"Identity Center: {manifest.instance_arn} (store {manifest.identity_store_id}, "
        f"{len(manifest.identity_users)} users, {len(manifest.identity_groups)} groups)"
    )
    kinds = manifest.counts_by_kind()
    if kinds:
        console.print("Users by kind: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
        console.print(
            "Expected classes: "
            + ", ".join(f"{c} {n}" for c, n in manifest.counts_by_class().items())
        )
    if manifest.unmatched_humans:
        console.print(f"Unmatched humans: {', '.join(manifest.unmatched_humans)}")
    for user, identities in manifest.ambiguous_humans.items():
        console.print(f"Ambiguous human: {user} -> {', '.join(identities)}")
    if samples_dir is not None:
        console.print(f"Samples and seed-manifest.json: {samples_dir}")

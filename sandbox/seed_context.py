"""What one seeding run shares: its sessions, random sources and clock, and the keys it planted."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import boto3

from sandbox.seed_manifest import SeedManifest

MEMBER_ROLE = "OrganizationAccountAccessRole"


class Seeding:
    """One seeding run's shared state, handed to each part of the seeder."""

    def __init__(self, session: boto3.Session, seed: int, endpoint_url: str | None):
        self.session = session
        self.seed = seed
        self.endpoint_url = endpoint_url
        self.rng = random.Random(seed)
        # All dates are relative to now, so "recent" stays recent whenever the sandbox starts.
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.region = session.region_name or "us-east-1"
        # The secret of the sample key (manifest.sample_key_id), written into the samples.
        self.sample_secret: str | None = None
        # (account id, user, active key id) of workload users, in creation order.
        self.workload_keys: list[tuple[str, str, str]] = []
        # Planting draws from its own source so the users' random draws stay as they were.
        self.plant_rng = random.Random(f"{seed}-planted-keys")
        self._member_credentials: dict[str, dict[str, Any]] = {}

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def member_client(self, account_id: str, service: str) -> Any:
        """A member-account client made from the management session: it reuses that session's
        loaded service models (a fresh Session re-reads EC2's large model, ~0.5 s)."""
        if account_id not in self._member_credentials:
            self._member_credentials[account_id] = self.client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE}",
                RoleSessionName="iamc-sandbox-seed",
            )["Credentials"]
        credentials = self._member_credentials[account_id]
        return self.session.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def fake_secret(self) -> str:
        """40 secret-access-key characters that are nobody's secret (planted next to real ids)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(self.plant_rng.choice(alphabet) for _ in range(40))

    def workload_key(self, index: int, account_id: str) -> tuple[str, str, str]:
        """The index-th workload key of an account (of any account if it has none)."""
        keys = [k for k in self.workload_keys if k[0] == account_id] or self.workload_keys
        return keys[index % len(keys)]


def plant(
    manifest: SeedManifest,
    key: tuple[str, str, str],
    source: str,
    where: str,
    *,
    with_secret: bool = True,
    history_only: bool = False,
) -> None:
    """Record in the manifest a key planted for the key scan to find, and where."""
    manifest.planted_keys.append(
        {
            "key_id": key[2],
            "user": key[1],
            "account_id": key[0],
            "source": source,
            "where": where,
            "with_secret": with_secret,
            "history_only": history_only,
        }
    )

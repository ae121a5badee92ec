"""Bringing a deleted IAM user back, as far as AWS allows, from its pre-deletion snapshot."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow

from domain.errors import ApplyRefused
from domain.spec import load_spec
from state import Store
from state.user_snapshots import StoredSnapshot
from tasks.aws import AwsSessions, translate_errors
from tasks.user_restore import restore_user

log = logging.getLogger(__name__)

RESTORE_RUN = "restore"


def _chosen(
    store: Store, migration_id: int, user: str | None, run_id: int | None
) -> list[StoredSnapshot]:
    from domain.retire import parse_user

    if user is not None:
        account_id, name = parse_user(user)
        found = store.user_snapshots(migration_id, account_id=account_id, user_name=name)
        if not found:
            raise ApplyRefused(f"no snapshot of {user}: it was not deleted by this migration")
        return [found[-1]]  # the latest deletion of that name
    found = [s for s in store.user_snapshots(migration_id) if s.run_id == run_id]
    if not found:
        raise ApplyRefused(f"run {run_id} deleted no user of this migration: nothing to restore")
    return found


def restore(
    spec_path: str | Path, user: str | None = None, run_id: int | None = None
) -> dict[str, Any]:
    """Re-create one deleted user (``ACCOUNT/NAME``) or every user a delete run deleted.

    Returns:
        ``{"run_id", "users": [{"user", "restored", "present", "cannot", ...}]}``.

    Raises:
        ApplyRefused: Neither or both of ``user`` and ``run_id``; no snapshot to restore.
    """
    if (user is None) == (run_id is None):
        raise ApplyRefused("restore: name one user (ACCOUNT/NAME) or one delete run (--run ID)")
    spec = load_spec(spec_path)
    sessions = AwsSessions.from_spec(spec)
    with Store.open(spec.state) as store:
        migration_id = store.find_migration(spec.name)
        if migration_id is None:
            raise ApplyRefused(f"migration {spec.name!r} has no state: nothing to restore")
        snapshots = _chosen(store, migration_id, user, run_id)
        restore_run = store.start_run(
            migration_id, RESTORE_RUN, {"spec": str(spec_path), "user": user, "of_run": run_id}
        )
        results = []
        try:
            for snapshot in snapshots:
                with translate_errors(snapshot.account_id, "restore"):
                    iam = sessions.for_restore(snapshot.account_id).client("iam")
                    result = restore_user(iam, snapshot.account_id, snapshot.content)
                log.info(
                    "restored %s/%s: %s re-created, %s not possible",
                    snapshot.account_id,
                    snapshot.user_name,
                    len(result.restored),
                    len(result.cannot),
                )
                results.append(
                    {"user": f"{snapshot.account_id}/{snapshot.user_name}", **asdict(result)}
                )
        except BaseException as err:
            store.finish_run(restore_run, "failed", error=str(err) or type(err).__name__)
            raise
        summary = {"run_id": restore_run, "users": results}
        store.finish_run(restore_run, "succeeded", summary=summary)
    return summary


@flow(name="restore", log_prints=False)
def restore_flow(
    spec_path: str, user: str | None = None, run_id: int | None = None
) -> dict[str, Any]:
    """Re-create deleted IAM users from their snapshots: the user, path, tags, boundary,
    policies, groups, SSH keys and signing certificates; and list what can't come back
    (access key secrets, the password, MFA devices, resource-policy grants).

    Args:
        spec_path: The migration spec (TOML).
        user: ``ACCOUNT/NAME`` of one deleted user.
        run_id: Or every user one delete run deleted.
    """
    return restore(spec_path, user, run_id)

"""Runbook step 2: map each human IAM user (and IAM group) to an Identity Center identity.

With ``target = "central-roles"`` the identities are the central account's principals (its IAM
users, or the roles its IdP federates into: ``tasks.central_identities``), and there are no
groups to map to.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from console.artifacts import publish_mapping
from console.operator import operator_step
from console.run_names import step_run_name
from domain.central_spec import SAML_ROLES
from domain.errors import NoInventoryError
from domain.mapping import MappingResult, map_identities
from domain.mapping_overrides import (
    GROUP_OVERRIDE_HEADER,
    USER_OVERRIDE_HEADER,
    Overrides,
    check_overrides,
    parse_overrides,
)
from domain.progress import emit
from domain.records import AccountInventory
from domain.spec import MigrationSpec
from engine.migration import Migration
from tasks.aws import AwsSessions
from tasks.central_identities import read_central_identities
from tasks.identity_store import IdentityStoreContents, find_instance, read_identity_store

log = logging.getLogger(__name__)


class _Runtime:
    """What the tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, spec: MigrationSpec, spec_path: str, sessions: AwsSessions):
        self.spec = spec
        self.spec_path = spec_path
        self.sessions = sessions


@task(name="read-identity-store", cache_policy=NO_CACHE, persist_result=False)
def read_identity(runtime: _Runtime) -> IdentityStoreContents:
    central = runtime.spec.central
    if runtime.spec.central_account and central is not None:
        # The people sign in there: read it through the member role, like any member account.
        runtime.sessions.check_access(central.account)
        return read_central_identities(
            runtime.sessions.for_account(central.account),
            central,
            protected_globs=tuple(runtime.spec.protected_users),
            protected_tag=runtime.spec.protected_tag,
        )
    session = runtime.sessions.management()
    instance = find_instance(
        session,
        identity_store_id=runtime.spec.mapping.identity_store_id,
        instance_arn=runtime.spec.mapping.instance_arn,
        spec_path=runtime.spec_path,
    )
    return read_identity_store(session, instance.identity_store_id)


class _MappingInput:
    """The snapshot, identity store and overrides; a plain class, so Prefect does not walk
    thousands of records looking for futures in the task's arguments."""

    def __init__(
        self,
        inventories: list[AccountInventory],
        identity: IdentityStoreContents,
        overrides: Overrides | None,
        group_overrides: Overrides | None,
    ):
        self.inventories = inventories
        self.identity = identity
        self.overrides = overrides
        self.group_overrides = group_overrides


@task(name="map-identities", cache_policy=NO_CACHE, persist_result=False)
def map_all(runtime: _Runtime, given: _MappingInput) -> MappingResult:
    return map_identities(
        given.inventories,
        given.identity.users,
        given.identity.groups,
        runtime.spec.mapping.rules,
        runtime.spec.mapping.group_rules,
        given.overrides,
        given.group_overrides,
    )


def load_overrides(spec: MigrationSpec) -> tuple[Overrides | None, Overrides | None]:
    """Parse the spec's override CSVs (syntax only: names are checked against the store later).

    Raises:
        InputFileError: naming the file, line and column.
    """
    users = (
        parse_overrides(spec.mapping.overrides, USER_OVERRIDE_HEADER)
        if spec.mapping.overrides
        else None
    )
    groups = (
        parse_overrides(spec.mapping.group_overrides, GROUP_OVERRIDE_HEADER)
        if spec.mapping.group_overrides
        else None
    )
    return users, groups


@flow(
    name="mapping", flow_run_name=step_run_name("mapping"), log_prints=False, persist_result=False
)
@operator_step("mapping", publish=publish_mapping)
def mapping_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Map the latest inventory's human IAM users and IAM groups to the identity store (or,
    with ``target = "central-roles"``, to the central account's principals).

    Everything that can be wrong with the input (overrides CSVs, no inventory yet) is found
    before anything is written: a bad CSV leaves the state DB as it was.

    Args:
        spec_path: The migration spec (TOML).
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, snapshot id, counts by status, groups mapped.

    Raises:
        InputFileError: An overrides CSV is malformed or names an unknown identity.
        NoInventoryError: No complete inventory snapshot yet.
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        overrides, group_overrides = load_overrides(spec)
        runtime = _Runtime(spec, spec_path, AwsSessions.from_spec(spec, profile=profile))
        known = store.migrations.find_migration(spec.name)
        snapshot = store.snapshots.latest_snapshot(known) if known is not None else None
        if known is None or snapshot is None:
            raise NoInventoryError(
                f"no inventory yet for migration {spec.name!r}: run 'iamc inventory -c "
                f"{spec_path}' first"
            )
        identity = read_identity(runtime)
        check_overrides(overrides, group_overrides, identity.users, identity.groups)
        emit("identity-read", users=len(identity.users), groups=len(identity.groups))
        source = identity_source(spec, identity)
        log.info("identities read from %s: %d users", source, len(identity.users))
        inventories = store.snapshots.load_snapshot(snapshot.id)
        given = _MappingInput(inventories, identity, overrides, group_overrides)
        result = map_all(runtime, given)

        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.runs.start_run(migration_id, "mapping", {"spec": str(Path(spec_path))})
        try:
            mapping_id = store.identity.save_mapping(
                run_id,
                snapshot.id,
                identity.users,
                identity.groups,
                result.users,
                result.groups,
            )
            store.snapshots.add_findings(run_id, result.findings)
            summary = {
                "run_id": run_id,
                "mapping_id": mapping_id,
                "snapshot_id": snapshot.id,
                **_identity_keys(spec, identity),
                "identity_source": source,
                "identity_users": len(identity.users),
                "identity_groups": len(identity.groups),
                **result.summary(),
                # What a person must see in map's own output, not only in 'report mapping'.
                "accounts_not_inventoried": {
                    i.account.account_id: i.error for i in inventories if i.error
                },
                "override_problems": [
                    f.message for f in result.findings if f.kind == "override-unused"
                ],
            }
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        store.runs.finish_run(run_id, "succeeded", summary=summary)
        return summary


def identity_source(spec: MigrationSpec, identity: IdentityStoreContents) -> str:
    """Where the identities came from, as a person reads it in the summary and artifacts."""
    central = spec.central
    if spec.central_account and central is not None:
        people = "federated roles" if central.arrive == SAML_ROLES else "IAM users"
        return f"central account {central.account} ({people})"
    return f"identity store {identity.identity_store_id}"


def _identity_keys(spec: MigrationSpec, identity: IdentityStoreContents) -> dict[str, str]:
    # notify reads identity_store_id for the access portal's URL: only Identity Center has one.
    if spec.central_account:
        return {"central_account": identity.identity_store_id}
    return {"identity_store_id": identity.identity_store_id}


def run_mapping(spec_path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """Run the mapping flow; returns its summary (see :func:`mapping_flow`)."""
    return mapping_flow(str(spec_path), profile)

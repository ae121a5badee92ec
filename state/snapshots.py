"""Inventory snapshots and findings (mixed into ``state.Store``): save per account, load whole."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from domain import records
from domain.credentials import CREDENTIAL_KINDS
from domain.errors import StateError
from state import models as m
from state.session import Sessions, lock_group

log = logging.getLogger(__name__)

# The credential kinds with a table of their own (the console password is IamUser columns).
LISTED_KINDS = tuple(kind for kind in CREDENTIAL_KINDS if not kind.flag)


@dataclass(frozen=True)
class SnapshotInfo:
    """An inventory snapshot; ``completed`` is None until :meth:`Store.complete_snapshot`."""

    id: int
    run_id: int
    created: datetime
    completed: datetime | None
    account_count: int
    migration_id: int
    # The organization's management account and the account the inventory ran from
    # (None: not recorded); they differ when the tool runs as a delegated administrator.
    management_account_id: str | None = None
    caller_account_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class SnapshotRepository:
    """Snapshot and finding methods of ``state.Store``."""

    def __init__(self, db: Sessions):
        self._db = db

    def new_snapshot(self, migration_id: int, run_id: int) -> int:
        """Start the snapshot of an inventory run; calling it again for the run returns the same.

        Args:
            migration_id: The migration inventoried.
            run_id: The inventory run.

        Returns:
            The snapshot's id.

        Raises:
            StateError: The run belongs to another migration, or the DB can't be written.
        """

        def work(session: Session) -> int:
            found = session.execute(
                select(m.Snapshot.id, m.Snapshot.migration_id).where(m.Snapshot.run_id == run_id)
            ).one_or_none()
            if found is not None:
                if found.migration_id != migration_id:
                    raise StateError(
                        f"run {run_id} already has a snapshot for migration {found.migration_id}"
                    )
                return found.id
            return session.execute(
                insert(m.Snapshot)
                .values(migration_id=migration_id, run_id=run_id, created=_now())
                .returning(m.Snapshot.id)
            ).scalar_one()

        return self._db.retrying_on_conflict(work)

    def save_account_inventory(self, snapshot_id: int, inventory: records.AccountInventory) -> None:
        """Save one account's inventory in one transaction, replacing any earlier save of it.

        Args:
            snapshot_id: From :meth:`new_snapshot`.
            inventory: What the account's inventory task found.

        Raises:
            StateError: No such snapshot, duplicate names in the inventory, or the DB can't
                be written.
        """
        self._db.retrying_on_conflict(
            lambda session: _save_account(session, snapshot_id, inventory)
        )
        log.debug(
            "saved account %s (%d users) in snapshot %s",
            inventory.account.account_id,
            len(inventory.users),
            snapshot_id,
        )

    def complete_snapshot(self, snapshot_id: int) -> None:
        """Mark a snapshot complete: from now on it can be the latest.

        Args:
            snapshot_id: From :meth:`new_snapshot`.

        Raises:
            StateError: No such snapshot.
        """
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.Snapshot).where(m.Snapshot.id == snapshot_id).values(completed=_now())
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StateError(f"state DB {self._db.masked_url} has no snapshot {snapshot_id}")

    def latest_snapshot(self, migration_id: int) -> SnapshotInfo | None:
        """Return the migration's most recently completed snapshot.

        Args:
            migration_id: The migration.

        Returns:
            The snapshot, or None if no snapshot of it was completed.
        """
        account_count = (
            select(func.count(m.SnapshotAccount.id))
            .where(m.SnapshotAccount.snapshot_id == m.Snapshot.id)
            .scalar_subquery()
        )
        query = (
            select(m.Snapshot.__table__, account_count.label("account_count"))
            .where(m.Snapshot.migration_id == migration_id, m.Snapshot.completed.is_not(None))
            .order_by(m.Snapshot.completed.desc(), m.Snapshot.id.desc())
            .limit(1)
        )
        with self._db.session(write=False) as session:
            row = session.execute(query).one_or_none()
        if row is None:
            return None
        return SnapshotInfo(
            id=row.id,
            run_id=row.run_id,
            created=row.created,
            completed=row.completed,
            account_count=row.account_count,
            migration_id=row.migration_id,
            management_account_id=row.management_account_id,
            caller_account_id=row.caller_account_id,
        )

    def record_organization(
        self, snapshot_id: int, management_account_id: str, caller_account_id: str
    ) -> None:
        """Record the organization's management account and the account the run was in.

        Args:
            snapshot_id: From :meth:`new_snapshot`.
            management_account_id: DescribeOrganization's MasterAccountId.
            caller_account_id: The tool's session's account (GetCallerIdentity).
        """
        with self._db.session(write=True) as session:
            session.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == snapshot_id)
                .values(
                    management_account_id=management_account_id,
                    caller_account_id=caller_account_id,
                )
            )

    def account_names(self, snapshot_id: int) -> dict[str, str]:
        """Account id -> name, as the snapshot saw them."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.SnapshotAccount.account_id, m.SnapshotAccount.name).where(
                    m.SnapshotAccount.snapshot_id == snapshot_id
                )
            ).all()
        return {account_id: name or "" for account_id, name in rows}

    def load_snapshot(
        self, snapshot_id: int, *, policies: bool = True, accounts: list[str] | None = None
    ) -> list[records.AccountInventory]:
        """Load a snapshot, ordered by account id; users and groups by name, policies by ARN.

        Args:
            snapshot_id: The snapshot.
            policies: False leaves out managed policies, policy attachments and inline
                policy documents (users' inline policies keep their names; the documents
                are most of a snapshot's bytes), for readers of
                users and credentials only, such as the inventory report.
            accounts: Only these accounts (a batch of a step on a work pool reads its own,
                not the whole organization's); None: every account.

        Returns:
            One inventory per saved account, with every field as saved.

        Raises:
            StateError: No such snapshot.
        """
        with self._db.session(write=False) as session:
            exists = session.execute(
                select(m.Snapshot.id).where(m.Snapshot.id == snapshot_id)
            ).scalar_one_or_none()
            if exists is None:
                raise StateError(f"state DB {self._db.masked_url} has no snapshot {snapshot_id}")
            in_snapshot = m.SnapshotAccount.snapshot_id == snapshot_id
            if accounts is not None:
                in_snapshot = in_snapshot & m.SnapshotAccount.account_id.in_(accounts)
            return _load_snapshot(session, in_snapshot, policies=policies)

    # Findings

    def add_findings(self, run_id: int, findings: list[records.Finding]) -> None:
        """Record a run's findings.

        Args:
            run_id: The run that found them.
            findings: The findings.

        Raises:
            StateError: No such run, or the DB can't be written.
        """
        if not findings:
            return
        rows = [
            {
                "run_id": run_id,
                "severity": finding.severity,
                "kind": finding.kind,
                "account_id": finding.account_id,
                "subject": finding.subject,
                "message": finding.message,
                "details": finding.details or {},
            }
            for finding in findings
        ]
        with self._db.session(write=True) as session:
            session.execute(insert(m.FindingRow), rows)

    def findings(
        self,
        run_id: int | None = None,
        migration_id: int | None = None,
        kind: str | None = None,
    ) -> list[records.Finding]:
        """Return findings in the order they were added, filtered by any of the arguments.

        Args:
            run_id: Only this run's.
            migration_id: Only those of this migration's runs.
            kind: Only this kind.

        Returns:
            The findings.
        """
        query = select(m.FindingRow.__table__).order_by(m.FindingRow.id)
        if run_id is not None:
            query = query.where(m.FindingRow.run_id == run_id)
        if migration_id is not None:
            query = query.join(m.Run, m.Run.id == m.FindingRow.run_id).where(
                m.Run.migration_id == migration_id
            )
        if kind is not None:
            query = query.where(m.FindingRow.kind == kind)
        with self._db.session(write=False) as session:
            return [
                records.Finding(
                    severity=row.severity,
                    kind=row.kind,
                    message=row.message,
                    account_id=row.account_id,
                    subject=row.subject,
                    details=row.details or {},
                )
                for row in session.execute(query)
            ]


def _replace_account(
    session: Session, snapshot_id: int, inventory: records.AccountInventory
) -> int:
    """Delete an earlier save of the account, insert its row; returns the row's primary key."""
    account = inventory.account
    # Two saves of one account (a retried task racing the first attempt) would both find
    # nothing to delete and collide on insert; queue them instead.
    lock_group(session, "snapshot-account", snapshot_id, account.account_id)
    # Replacing is delete-then-insert; ON DELETE CASCADE removes the account's users, keys, ...
    session.execute(
        delete(m.SnapshotAccount).where(
            m.SnapshotAccount.snapshot_id == snapshot_id,
            m.SnapshotAccount.account_id == account.account_id,
        )
    )
    return session.execute(
        insert(m.SnapshotAccount)
        .values(
            snapshot_id=snapshot_id,
            account_id=account.account_id,
            name=account.name,
            email=account.email,
            status=account.status,
            parent_id=account.parent_id,
            gaps=list(inventory.gaps),
            error=inventory.error,
            roles=inventory.roles,
            roles_quota=inventory.roles_quota,
        )
        .returning(m.SnapshotAccount.id)
    ).scalar_one()


def _save_account(session: Session, snapshot_id: int, inventory: records.AccountInventory) -> None:
    account_pk = _replace_account(session, snapshot_id, inventory)
    _bulk(
        session,
        m.ManagedPolicy,
        [
            {
                "snapshot_account_id": account_pk,
                "arn": policy.arn,
                "name": policy.name,
                "path": policy.path,
                "aws_managed": policy.aws_managed,
                "default_version_id": policy.default_version_id,
                "document": policy.document,
            }
            for policy in inventory.managed_policies
        ],
    )

    group_pks = _insert_named(
        session,
        m.IamGroup,
        account_pk,
        [
            {"name": group.name, "group_id": group.group_id, "arn": group.arn, "path": group.path}
            for group in inventory.groups
        ],
    )
    user_pks = _insert_named(
        session,
        m.IamUser,
        account_pk,
        [_user_columns(user) for user in inventory.users],
    )

    rows: dict[type[m.Base], list[dict[str, Any]]] = defaultdict(list)
    for group in inventory.groups:
        owner = {"user_id": None, "group_id": group_pks[group.name]}
        _policy_rows(rows, owner, group.attached_policies, group.inline_policies)
    for user in inventory.users:
        _user_rows(rows, user_pks[user.name], user)
    for model, model_rows in rows.items():
        _bulk(session, model, model_rows)


def _user_columns(user: records.User) -> dict[str, Any]:
    return {
        "name": user.name,
        "user_id": user.user_id,
        "arn": user.arn,
        "path": user.path,
        "created": user.created,
        "password_enabled": user.password_enabled,
        "password_last_used": user.password_last_used,
        "password_last_changed": user.password_last_changed,
        "mfa_active": user.mfa_active,
        "permissions_boundary_arn": user.permissions_boundary_arn,
        "user_class": None if user.user_class is None else str(user.user_class),
        "class_reason": user.class_reason,
        "last_activity": user.last_activity,
    }


def _user_rows(rows: dict[type[m.Base], list[dict[str, Any]]], pk: int, user: records.User) -> None:
    """Rows of the tables a user's row owns: policies, tags, groups, credentials."""
    owner = {"user_id": pk, "group_id": None}
    _policy_rows(rows, owner, user.attached_policies, user.inline_policies)
    for i, (key, value) in enumerate(user.tags.items()):
        rows[m.UserTag].append({"user_id": pk, "position": i, "key": key, "value": value})
    for i, group_name in enumerate(user.groups):
        rows[m.GroupMembership].append({"user_id": pk, "position": i, "group_name": group_name})
    for kind in LISTED_KINDS:
        columns = kind.record_fields
        rows[m.CREDENTIAL_TABLES[kind.name]].extend(
            {"user_id": pk, "position": i, **{c: getattr(item, c) for c in columns}}
            for i, item in enumerate(kind.items(user))
        )


def _policy_rows(
    rows: dict[type[m.Base], list[dict[str, Any]]],
    owner: dict[str, int | None],
    attached: list[records.AttachedPolicy],
    inline: list[records.InlinePolicy],
) -> None:
    for i, policy in enumerate(attached):
        rows[m.PolicyAttachment].append(
            {**owner, "position": i, "arn": policy.arn, "name": policy.name}
        )
    for i, inline_policy in enumerate(inline):
        rows[m.InlinePolicy].append(
            {**owner, "position": i, "name": inline_policy.name, "document": inline_policy.document}
        )


def _bulk(session: Session, model: type[m.Base], rows: list[dict[str, Any]]) -> None:
    # One executemany per table instead of one ORM object per row: thousands of users. Core's
    # insert on the Table, not the ORM's bulk insert, which drops None values and so splits
    # rows with different null columns into separate single-row statements.
    if rows:
        session.execute(insert(model.__table__), rows)


def _insert_named(
    session: Session,
    model: type[m.IamUser] | type[m.IamGroup],
    account_pk: int,
    rows: list[dict[str, Any]],
) -> dict[str, int]:
    if not rows:
        return {}
    _bulk(session, model, [{"snapshot_account_id": account_pk, **row} for row in rows])
    # Names are unique per account, so one query maps them to the new primary keys.
    found = session.execute(
        select(model.name, model.id).where(model.snapshot_account_id == account_pk)
    )
    return {name: pk for name, pk in found}


def _by_owner(session: Session, model: type[m.Base], where: Any, order: Any) -> Iterator[Any]:
    table = model.__table__
    return iter(session.execute(select(table).where(where).order_by(*order)))


def _load_accounts(session: Session, in_snapshot: Any) -> dict[int, records.AccountInventory]:
    """The snapshot's accounts, each an inventory still without users and groups."""
    inventories: dict[int, records.AccountInventory] = {}
    for row in session.execute(
        select(m.SnapshotAccount.__table__)
        .where(in_snapshot)
        .order_by(m.SnapshotAccount.account_id)
    ):
        inventories[row.id] = records.AccountInventory(
            account=records.Account(
                account_id=row.account_id,
                name=row.name,
                email=row.email,
                status=row.status,
                parent_id=row.parent_id,
            ),
            gaps=list(row.gaps or []),
            error=row.error,
            roles=row.roles,
            roles_quota=row.roles_quota,
        )
    return inventories


def _user_record(row: Any) -> records.User:
    return records.User(
        name=row.name,
        user_id=row.user_id,
        arn=row.arn,
        path=row.path,
        created=row.created,
        password_enabled=row.password_enabled,
        password_last_used=row.password_last_used,
        password_last_changed=row.password_last_changed,
        mfa_active=row.mfa_active,
        permissions_boundary_arn=row.permissions_boundary_arn,
        user_class=None if row.user_class is None else records.UserClass(row.user_class),
        class_reason=row.class_reason,
        last_activity=row.last_activity,
    )


def _load_snapshot(
    session: Session, in_snapshot: Any, *, policies: bool = True
) -> list[records.AccountInventory]:
    account_pks = select(m.SnapshotAccount.id).where(in_snapshot)
    user_pks = select(m.IamUser.id).where(m.IamUser.snapshot_account_id.in_(account_pks))
    group_pks = select(m.IamGroup.id).where(m.IamGroup.snapshot_account_id.in_(account_pks))

    inventories = _load_accounts(session, in_snapshot)

    managed = m.ManagedPolicy.snapshot_account_id.in_(account_pks)
    for row in (
        _by_owner(session, m.ManagedPolicy, managed, [m.ManagedPolicy.arn]) if policies else ()
    ):
        inventories[row.snapshot_account_id].managed_policies.append(
            records.ManagedPolicy(
                arn=row.arn,
                name=row.name,
                path=row.path,
                aws_managed=row.aws_managed,
                default_version_id=row.default_version_id,
                document=row.document,
            )
        )

    groups: dict[int, records.Group] = {}
    for row in _by_owner(
        session, m.IamGroup, m.IamGroup.snapshot_account_id.in_(account_pks), [m.IamGroup.name]
    ):
        group = records.Group(name=row.name, group_id=row.group_id, arn=row.arn, path=row.path)
        groups[row.id] = group
        inventories[row.snapshot_account_id].groups.append(group)

    users: dict[int, records.User] = {}
    for row in _by_owner(
        session, m.IamUser, m.IamUser.snapshot_account_id.in_(account_pks), [m.IamUser.name]
    ):
        user = _user_record(row)
        users[row.id] = user
        inventories[row.snapshot_account_id].users.append(user)

    def user_rows(model: Any) -> Iterator[Any]:
        return _by_owner(
            session, model, model.user_id.in_(user_pks), [model.user_id, model.position]
        )

    for row in user_rows(m.UserTag):
        users[row.user_id].tags[row.key] = row.value
    for row in user_rows(m.GroupMembership):
        users[row.user_id].groups.append(row.group_name)
    for kind in LISTED_KINDS:
        columns = kind.record_fields
        for row in user_rows(m.CREDENTIAL_TABLES[kind.name]):
            getattr(users[row.user_id], kind.user_field).append(
                kind.record(**{c: getattr(row, c) for c in columns})
            )

    if not policies:
        # Users' inline policy names without their documents: a reader of counts (the CIS
        # verdict) still sees whom iamc quarantined (its deny-all inline policy).
        named = session.execute(
            select(m.InlinePolicy.user_id, m.InlinePolicy.name)
            .where(m.InlinePolicy.user_id.in_(user_pks))
            .order_by(m.InlinePolicy.user_id, m.InlinePolicy.position)
        )
        for user_pk, name in named:
            users[user_pk].inline_policies.append(records.InlinePolicy(name, {}))
    for model in (m.PolicyAttachment, m.InlinePolicy) if policies else ():
        owned = model.user_id.in_(user_pks) | model.group_id.in_(group_pks)
        order = [model.user_id, model.group_id, model.position]
        for row in _by_owner(session, model, owned, order):
            principal = users[row.user_id] if row.user_id is not None else groups[row.group_id]
            if model is m.PolicyAttachment:
                principal.attached_policies.append(records.AttachedPolicy(row.arn, row.name))
            else:
                principal.inline_policies.append(records.InlinePolicy(row.name, row.document))

    return list(inventories.values())

"""The store's identity-mapping part: identity-store snapshots and user and group mappings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from domain import records
from domain.errors import StateError
from domain.runs import RUN_SUCCEEDED
from state import models as m
from state.session import Sessions

# state.store.RUN_SUCCEEDED; not imported, as state.store imports this module.


@dataclass(frozen=True)
class MappingInfo:
    """A stored mapping: ``snapshot_id`` is the inventory snapshot it was computed from."""

    id: int
    run_id: int
    snapshot_id: int
    created: datetime
    identity_users: list[records.IdentityUser]
    identity_groups: list[records.IdentityGroup]
    user_mappings: list[records.UserMapping]
    group_mappings: list[records.GroupMapping]


class IdentityRepository:
    """Mappings of IAM users and groups to Identity Center identities, per mapping run."""

    def __init__(self, db: Sessions):
        self._db = db

    def save_mapping(
        self,
        run_id: int,
        snapshot_id: int,
        identity_users: list[records.IdentityUser],
        identity_groups: list[records.IdentityGroup],
        user_mappings: list[records.UserMapping],
        group_mappings: list[records.GroupMapping],
    ) -> int:
        """Save a mapping run's identity store and mappings in one transaction.

        Args:
            run_id: The mapping run (one mapping per run).
            snapshot_id: The inventory snapshot the mapping was computed from.
            identity_users: The identity store's users.
            identity_groups: Its groups, with member ids.
            user_mappings: One per human IAM user.
            group_mappings: One per IAM group.

        Returns:
            The mapping's id.

        Raises:
            StateError: No such run or snapshot, the run already has a mapping, duplicate
                (account, name) pairs, or the DB can't be written.
        """
        with self._db.session(write=True) as session:
            mapping_id = session.execute(
                insert(m.MappingRow)
                .values(run_id=run_id, snapshot_id=snapshot_id, created=datetime.now(UTC))
                .returning(m.MappingRow.id)
            ).scalar_one()
            rows = _mapping_rows(identity_users, identity_groups, user_mappings, group_mappings)
            for model, model_rows in rows:
                if model_rows:
                    session.execute(
                        insert(model.__table__),
                        [{"mapping_id": mapping_id, **row} for row in model_rows],
                    )
            return mapping_id

    def latest_mapping(self, migration_id: int) -> MappingInfo | None:
        """Return the migration's mapping from its latest succeeded mapping run.

        Args:
            migration_id: The migration.

        Returns:
            The mapping, users and groups ordered by account and name; None if there is none.
        """
        query = (
            select(m.MappingRow.__table__)
            .join(m.Run, m.Run.id == m.MappingRow.run_id)
            .where(m.Run.migration_id == migration_id, m.Run.status == RUN_SUCCEEDED)
            .order_by(m.MappingRow.id.desc())
            .limit(1)
        )
        with self._db.session(write=False) as session:
            row = session.execute(query).one_or_none()
            if row is None:
                return None
            return _load_mapping(session, row)

    def get_mapping(self, mapping_id: int) -> MappingInfo:
        """Return one stored mapping.

        Raises:
            StateError: No such mapping.
        """
        with self._db.session(write=False) as session:
            row = session.execute(
                select(m.MappingRow.__table__).where(m.MappingRow.id == mapping_id)
            ).one_or_none()
            if row is None:
                raise StateError(f"state DB {self._db.masked_url} has no mapping {mapping_id}")
            return _load_mapping(session, row)


def _mapping_rows(
    identity_users: list[records.IdentityUser],
    identity_groups: list[records.IdentityGroup],
    user_mappings: list[records.UserMapping],
    group_mappings: list[records.GroupMapping],
) -> list[tuple[type[m.Base], list[dict[str, Any]]]]:
    """The rows of a mapping, per table, without their mapping id."""
    return [
        (
            m.IdentityUserRow,
            [
                {
                    "user_id": u.user_id,
                    "user_name": u.user_name,
                    "display_name": u.display_name,
                    "emails": list(u.emails),
                    "external_id": u.external_id,
                }
                for u in identity_users
            ],
        ),
        (
            m.IdentityGroupRow,
            [
                {
                    "group_id": g.group_id,
                    "display_name": g.display_name,
                    "member_ids": list(g.member_ids),
                }
                for g in identity_groups
            ],
        ),
        (
            m.UserMappingRow,
            [
                {
                    "account_id": u.account_id,
                    "iam_user": u.iam_user,
                    "status": str(u.status),
                    "rule": u.rule,
                    "identity_user_id": u.identity_user_id,
                    "identity_user_name": u.identity_user_name,
                    "candidates": list(u.candidates),
                    "reason": u.reason,
                }
                for u in user_mappings
            ],
        ),
        (
            m.GroupMappingRow,
            [
                {
                    "account_id": g.account_id,
                    "iam_group": g.iam_group,
                    "status": str(g.status),
                    "rule": g.rule,
                    "identity_group_id": g.identity_group_id,
                    "identity_group_name": g.identity_group_name,
                    "reason": g.reason,
                }
                for g in group_mappings
            ],
        ),
    ]


def _rows(session: Session, model: Any, mapping_id: int, *order: Any) -> Iterator[Any]:
    return iter(
        session.execute(
            select(model.__table__).where(model.mapping_id == mapping_id).order_by(*order)
        )
    )


def _load_mapping(session: Session, row: Any) -> MappingInfo:
    return MappingInfo(
        id=row.id,
        run_id=row.run_id,
        snapshot_id=row.snapshot_id,
        created=row.created,
        identity_users=[
            records.IdentityUser(
                user_id=r.user_id,
                user_name=r.user_name,
                display_name=r.display_name,
                emails=list(r.emails or []),
                external_id=r.external_id,
            )
            for r in _rows(session, m.IdentityUserRow, row.id, m.IdentityUserRow.user_name)
        ],
        identity_groups=[
            records.IdentityGroup(
                group_id=r.group_id, display_name=r.display_name, member_ids=list(r.member_ids)
            )
            for r in _rows(session, m.IdentityGroupRow, row.id, m.IdentityGroupRow.display_name)
        ],
        user_mappings=[
            records.UserMapping(
                account_id=r.account_id,
                iam_user=r.iam_user,
                status=records.MatchStatus(r.status),
                rule=r.rule,
                identity_user_id=r.identity_user_id,
                identity_user_name=r.identity_user_name,
                candidates=list(r.candidates or []),
                reason=r.reason,
            )
            for r in _rows(
                session,
                m.UserMappingRow,
                row.id,
                m.UserMappingRow.account_id,
                m.UserMappingRow.iam_user,
            )
        ],
        group_mappings=[
            records.GroupMapping(
                account_id=r.account_id,
                iam_group=r.iam_group,
                status=records.MatchStatus(r.status),
                rule=r.rule,
                identity_group_id=r.identity_group_id,
                identity_group_name=r.identity_group_name,
                reason=r.reason,
            )
            for r in _rows(
                session,
                m.GroupMappingRow,
                row.id,
                m.GroupMappingRow.account_id,
                m.GroupMappingRow.iam_group,
            )
        ],
    )

"""What each account's child flow run reported, for the parent flow run that dispatched it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from state import models as m
from state.session import Sessions


class AccountResultRepository:
    """Per (work, account): the latest report a batch run on a worker wrote."""

    def __init__(self, db: Sessions):
        self._db = db

    def save(
        self, work: str, account_id: str, payload: dict[str, Any], flow_run_id: str | None
    ) -> None:
        """Record one account's result, replacing an earlier attempt's."""
        with self._db.session(write=True) as session:
            session.execute(
                delete(m.AccountResultRow).where(
                    m.AccountResultRow.work == work, m.AccountResultRow.account_id == account_id
                )
            )
            session.add(
                m.AccountResultRow(
                    work=work,
                    account_id=account_id,
                    payload=payload,
                    flow_run_id=flow_run_id,
                    finished_at=datetime.now(UTC),
                )
            )

    def results(self, work: str, accounts: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """The results recorded for ``work`` (of ``accounts`` only, if given), by account."""
        query = select(m.AccountResultRow.account_id, m.AccountResultRow.payload).where(
            m.AccountResultRow.work == work
        )
        if accounts is not None:
            query = query.where(m.AccountResultRow.account_id.in_(accounts))
        with self._db.session(write=False) as session:
            return {account: payload for account, payload in session.execute(query)}

    def forget(self, work: str, accounts: list[str]) -> None:
        """Drop earlier results of ``accounts`` before they are dispatched again."""
        with self._db.session(write=True) as session:
            session.execute(
                delete(m.AccountResultRow).where(
                    m.AccountResultRow.work == work, m.AccountResultRow.account_id.in_(accounts)
                )
            )

"""Token buckets in the state DB: one AWS rate limit held by every process on every machine.

Each (API family, account) has a row of ``rate_buckets`` (revision 0015). A call takes its
token in one statement, an upsert that refills the bucket for the time since the last call,
by the database's clock, and takes one token. Tokens may go below zero: a call that finds the
bucket empty reserves the next token all the same and is told how long until it is due, then
sleeps that long on its own side. Callers so queue in the order the database served them,
nobody polls, and the machines' clocks never enter into it (the generic cell rate algorithm,
GCRA, as a token bucket that may owe).

With ``capacity`` C and ``rate`` r a second, at most C + r * T calls start in any T seconds,
whatever the number of processes.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from domain.errors import StateError
from state.engine import mask_url
from state.session import reason

log = logging.getLogger(__name__)

# One round trip: insert a full bucket less one token, or refill the existing one for the
# time elapsed and take a token. clock_timestamp() is read after the row lock is granted (the
# SET runs on the locked row), so a call that queued on the lock is refilled up to when it was
# served; greatest() keeps a clock step backwards from refilling twice.
_TAKE = text(
    """
    INSERT INTO rate_buckets AS bucket (key, available, stamp)
    VALUES (:key, CAST(:capacity AS float8) - 1, clock_timestamp())
    ON CONFLICT (key) DO UPDATE SET
        available = least(
            CAST(:capacity AS float8),
            bucket.available + CAST(:rate AS float8)
                * greatest(0, extract(epoch FROM clock_timestamp() - bucket.stamp))::float8
        ) - 1,
        stamp = greatest(bucket.stamp, clock_timestamp())
    RETURNING available
    """
)


# Connections a process keeps for its takes (its threads wait their turn for one).
POOLED_CONNECTIONS = 4


class RateBuckets:
    """The shared token buckets of one PostgreSQL state DB; safe to share between threads.

    Its connections are its own (autocommit, no ping before use: each take is one statement,
    so one round trip), opened on the first :meth:`take`. The table comes with the schema,
    which opening the store (``state.Store.open``) brings to head.
    """

    def __init__(self, url: str):
        self._url = url
        self._masked = mask_url(url)
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _connected(self) -> Engine:
        with self._lock:
            if self._engine is None:
                # A take holds its connection for one statement (well under a millisecond):
                # a few connections serve every thread, and each worker's process adds few to
                # the server's max_connections. No overflow: an overflow connection is closed
                # when it comes back, so eight threads on two pooled connections connected
                # anew all the time (a PostgreSQL backend process each; in a batch run's
                # profile, its threads waited on connects more than on AWS).
                self._engine = create_engine(
                    self._url,
                    isolation_level="AUTOCOMMIT",
                    pool_size=POOLED_CONNECTIONS,
                    max_overflow=0,
                )
            return self._engine

    def take(self, key: str, rate: float, capacity: float) -> float:
        """Take one token from bucket ``key``, creating it full if it is new.

        Args:
            key: The bucket, e.g. ``iam/123456789012``.
            rate: Tokens added per second.
            capacity: The most tokens the bucket holds (the burst allowed after a pause).

        Returns:
            Seconds the caller must wait before its call: 0 when a token was there, else
            how long until the token it reserved is due.

        Raises:
            StateError: The DB could not be reached or refused the statement.
        """
        params = {"key": key, "rate": rate, "capacity": capacity}
        for attempt in (1, 2):
            try:
                with self._connected().connect() as connection:
                    available = connection.execute(_TAKE, params).scalar_one()
                return max(0.0, -float(available) / rate)
            except DBAPIError as err:
                # A pooled connection the server closed (a restart, an idle timeout) is
                # dropped by the pool on this error: the second attempt gets a fresh one.
                if attempt == 1 and err.connection_invalidated:
                    continue
                raise StateError(f"rate bucket in {self._masked}: {reason(err)}") from err
            except SQLAlchemyError as err:
                raise StateError(f"rate bucket in {self._masked}: {reason(err)}") from err
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release the connections (a later :meth:`take` opens new ones)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


_shared: dict[str, RateBuckets] = {}
_shared_lock = threading.Lock()


def shared_buckets(url: str) -> RateBuckets | None:
    """The process's :class:`RateBuckets` of the state DB at ``url``, if it is PostgreSQL.

    A SQLite state DB is one machine's file: its processes keep their limits in memory.
    Nothing is connected until the first :meth:`RateBuckets.take`.

    Args:
        url: The state DB's SQLAlchemy URL.

    Returns:
        One object per URL and process (its connections shared by every session), or None.
    """
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        return None
    if backend != "postgresql":
        return None
    with _shared_lock:
        return _shared.setdefault(url, RateBuckets(url))

"""PostgreSQL pipelines: several statements sent in one round trip (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from django.db.backends.utils import CursorWrapper


def pipelined(cursor: CursorWrapper) -> AbstractContextManager[Any]:
    """On PostgreSQL (psycopg 3), send the block's statements without waiting
    for each one's result: statements whose results are not read take one
    round trip to the server together, instead of one each. Elsewhere, and
    with psycopg 2 or a libpq older than 14 (no pipeline mode), the block runs
    as it is."""
    raw = cursor.db.connection
    if cursor.db.vendor != "postgresql" or not _pipelines_supported(raw):
        return nullcontext()  # no generator to run on SQLite's hot path
    return _pipeline(cursor.db, raw)


@contextmanager
def _pipeline(wrapper: Any, raw: Any) -> Iterator[None]:
    with wrapper.wrap_database_errors, raw.pipeline():
        yield


def _pipelines_supported(raw: Any) -> bool:
    if not hasattr(raw, "pipeline"):
        return False  # psycopg 2
    # Lazy: psycopg is an optional dependency, present only with PostgreSQL.
    from psycopg import Pipeline

    return bool(Pipeline.is_supported())


#: The channel on which writers announce new events, delivered at their commit.
CHANNEL = "hero_stored_event"

# The keys of Django's connection parameters that name the server and the login
# (Django adds its cursor class and adapters, which a bare connection does without).
_SERVER_PARAMETERS = ("dbname", "user", "password", "host", "port", "sslmode")


def announce(cursor: CursorWrapper) -> None:
    """Tell listeners that this transaction wrote events: ``NOTIFY``, which
    PostgreSQL delivers when (and only if) the transaction commits."""
    cursor.execute(f"NOTIFY {CHANNEL}")


class Listener:
    """A connection of its own that ``LISTEN``\\ s on the store's channel, so a
    follower wakes when events are committed instead of at its next poll."""

    def __init__(self, connection: Any) -> None:
        # Lazy: psycopg is an optional dependency, present only with PostgreSQL.
        import psycopg

        params = connection.get_connection_params()
        server = {key: params[key] for key in _SERVER_PARAMETERS if key in params}
        self.connection = psycopg.connect(**server, connect_timeout=5, autocommit=True)
        self.connection.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for events; whether some were announced
        (announcements received meanwhile count at once)."""
        return any(
            True for _ in self.connection.notifies(timeout=timeout, stop_after=1)
        )

    def close(self) -> None:
        self.connection.close()

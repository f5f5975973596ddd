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

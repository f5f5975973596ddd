"""The hash chain: each event's link covers the link before it, so that editing,
deleting or reordering any stored event breaks every link after it.

The link is computed where the event is inserted, in the INSERT itself: on
SQLite by the SQL functions this module registers on the connection, on
PostgreSQL by the SQL expression :func:`postgres_link_sql` builds (the same
bytes :func:`link` hashes), and in Python for multi-row inserts there.
:func:`verify_chain` recomputes it over the whole store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from hero.conf import conf

#: The link before the first event of the store.
GENESIS = bytes(32)


def link(previous: bytes | None, event: StoredEvent) -> bytes:
    """The chain value of ``event``: SHA-256 over the previous event's chain
    value and this event's aggregate, version, topic and state, so that editing,
    deleting or reordering any stored event breaks every link after it."""
    originator = event.originator_id
    uuid = originator if isinstance(originator, UUID) else UUID(str(originator))
    return _link(
        previous, uuid.bytes, event.originator_version, event.topic, event.state
    )


def _link(
    previous: bytes | None, uuid: bytes, version: int, topic: str, state: bytes
) -> bytes:
    encoded = topic.encode()
    digest = sha256(previous or GENESIS)
    digest.update(uuid)
    digest.update(version.to_bytes(8, "big", signed=True))
    digest.update(len(encoded).to_bytes(4, "big"))
    digest.update(encoded)
    digest.update(state)
    return digest.digest()


class _SQLiteChain(threading.local):
    """SQL functions that compute the chain inside SQLite's INSERT statement, so
    that reading the last link and writing the next take one statement (and the
    write lock is taken before anything is read)."""

    previous: bytes = GENESIS

    def start(self, previous: bytes | None, *fields: Any) -> bytes:
        self.previous = previous or GENESIS
        return self.next(*fields)

    def next(self, originator: str, version: int, topic: str, state: bytes) -> bytes:
        self.previous = link(
            self.previous, StoredEvent(originator, version, topic, state)
        )
        return self.previous


_sqlite_chain = _SQLiteChain()


def register_sqlite_functions(wrapper: Any) -> None:
    """Register hero's chain functions on the wrapper's current connection."""
    raw = wrapper.connection
    if getattr(wrapper, "_hero_chain_connection", None) is not raw:
        raw.create_function("hero_chain_start", 5, _sqlite_chain.start)
        raw.create_function("hero_chain_next", 4, _sqlite_chain.next)
        wrapper._hero_chain_connection = raw


def sqlite_first_row_sql(events_table: str) -> str:
    """A row of an INSERT on SQLite whose link starts from the last stored one;
    its parameters: the event's four fields, twice."""
    return (
        "(%s, %s, %s, %s, hero_chain_start((SELECT chain FROM "
        f"{events_table} ORDER BY id DESC LIMIT 1), %s, %s, %s, %s))"
    )


#: A further row of the same INSERT, linked to the row before it.
SQLITE_NEXT_ROW_SQL = "(%s, %s, %s, %s, hero_chain_next(%s, %s, %s, %s))"


def postgres_link_sql(events_table: str) -> str:
    """SQL for the link of a new event on PostgreSQL, from the last stored link
    (read under the ordering lock). Its parameters: :func:`postgres_link_params`."""
    return (
        f"sha256(COALESCE((SELECT chain FROM {events_table} ORDER BY id DESC LIMIT 1), "
        "%s::bytea) || uuid_send(%s::uuid) || int8send(%s::bigint) "
        "|| int4send(octet_length(convert_to(%s::text, 'UTF8'))) "
        "|| convert_to(%s::text, 'UTF8') || %s::bytea)"
    )


def postgres_link_params(uuid: Any, event: StoredEvent) -> list[Any]:
    """The parameters of :func:`postgres_link_sql` for ``event``."""
    return [
        GENESIS,
        uuid,
        event.originator_version,
        event.topic,
        event.topic,
        event.state,
    ]


@dataclass(frozen=True)
class ChainCheck:
    """The result of checking the store's hash chain."""

    checked: int
    broken_at: int | None = None
    head: bytes | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(batch_size: int = 5000) -> ChainCheck:
    """Recompute the chain over every stored event, in store order, and report
    the first position whose stored link does not match (the event there, or
    one before it, was edited, deleted or moved)."""
    # Lazy: the store is importable before Django has loaded the models.
    from hero.models import StoredEvent as StoredEventModel

    events = StoredEventModel.objects.using(conf.HERO_DATABASE).order_by("id")
    previous, last, checked = GENESIS, 0, 0
    while True:
        rows = list(
            events.filter(id__gt=last).values_list(
                "id", "originator_id", "originator_version", "topic", "state", "chain"
            )[:batch_size]
        )
        if not rows:
            return ChainCheck(checked, head=previous if checked else None)
        for position, originator, version, topic, state, stored in rows:
            previous = link(
                previous, StoredEvent(originator, version, topic, bytes(state))
            )
            if stored is None or bytes(stored) != previous:
                return ChainCheck(checked, broken_at=position)
            checked += 1
        last = rows[-1][0]

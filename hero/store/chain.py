"""The chain: each event's link is a MAC, keyed with a secret the database does
not hold, over the link before it and the event, so that nobody without the key
can edit, delete, reorder, insert or append an event and still have the chain
verify.

Where the key lives at each step:

- **Derived** in the process from Django's settings: ``HERO_CHAIN_KEY`` if set,
  otherwise from ``SECRET_KEY`` with a salt of hero's own (as
  ``django.core.signing`` derives its keys), so that it works with no set-up.
  Old keys (``HERO_CHAIN_KEY_FALLBACKS``, or those derived from
  ``SECRET_KEY_FALLBACKS``) still verify what they linked.
- **Linking**: in Python, in the writing process. On SQLite, the INSERT calls
  the SQL functions this module registers on the connection, which run in the
  process; on PostgreSQL the last link is read under the ordering lock and the
  new links are sent as values. The key is never sent to the database, stored
  in it, or written to its logs.
- **Verifying** (:func:`verify_chain`, ``hero_verify``): in the verifying
  process, which must have the same settings.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any
from uuid import UUID

from django.utils.crypto import salted_hmac
from eventsourcing.persistence import StoredEvent

from hero.conf import conf
from hero.exceptions import ChainBroken

#: The link before the first event of the store.
GENESIS = bytes(32)

#: PostgreSQL: the most events a linker reads and links in one transaction
#: (:func:`link_committed`), so that its memory and its transaction stay
#: small however many events wait.
LINK_BATCH = 1000

#: PostgreSQL: the most events a writer in a transaction of hero's own links
#: before its own on the way (:class:`Unlinked`), so that an award's time
#: does not grow with the events waiting.
LINKED_ON_THE_WAY = 100

_KEY_SALT = "hero.store.chain"


@dataclass(frozen=True)
class ChainKey:
    """A key that links events, and the name hero_verify reports it by."""

    secret: bytes = field(repr=False)
    #: Which setting it comes from: "current" or "fallback N".
    label: str = "current"

    @property
    def fingerprint(self) -> str:
        """A short public name of the key (a MAC of a constant, not the key)."""
        return hmac.new(self.secret, b"hero key fingerprint", sha256).hexdigest()[:12]


def derive_key(secret: str | bytes) -> bytes:
    """The chain key derived from a secret such as ``SECRET_KEY``."""
    return salted_hmac(
        _KEY_SALT, b"chain key", secret=secret, algorithm="sha256"
    ).digest()


_keys_cache: dict[tuple[Any, ...], tuple[ChainKey, ...]] = {}


def chain_keys() -> tuple[ChainKey, ...]:
    """The key that links new events, then the old keys that still verify."""
    sources = conf.chain_key_sources
    keys = _keys_cache.get(sources)
    if keys is None:
        keys = tuple(
            ChainKey(derive_key(source), "current" if n == 0 else f"fallback {n}")
            for n, source in enumerate(sources)
        )
        _keys_cache.clear()  # one set of settings at a time
        _keys_cache[sources] = keys
    return keys


def link(previous: bytes | None, event: StoredEvent, key: bytes | None = None) -> bytes:
    """The link of ``event``: HMAC-SHA-256, with the current key unless ``key``
    is given, over the previous event's link and this event's aggregate,
    version, topic and state."""
    signed = _signed(
        event.originator_id, event.originator_version, event.topic, event.state
    )
    return hmac.digest(
        key or chain_keys()[0].secret, (previous or GENESIS) + signed, "sha256"
    )


def _signed(originator: Any, version: int, topic: str, state: bytes) -> bytes:
    """What a link or a seal covers of an event: its aggregate's id (16
    bytes), its version (8, signed), its topic's length (4) and topic, and its
    state; one message, so that the MAC is one call into OpenSSL."""
    if isinstance(originator, UUID):
        uuid = originator.bytes
    elif isinstance(originator, str) and len(originator) == 32:  # SQLite's text
        uuid = bytes.fromhex(originator)
    else:
        uuid = UUID(str(originator)).bytes
    encoded = topic.encode()
    return b"".join(
        (
            uuid,
            version.to_bytes(8, "big", signed=True),
            len(encoded).to_bytes(4, "big"),
            encoded,
            state,
        )
    )


def seal(position: int, event: StoredEvent, key: bytes | None = None) -> bytes:
    """The MAC an event carries until it is linked (PostgreSQL): HMAC-SHA-256,
    with the current key unless ``key`` is given, over its position and the
    event, so that an edit made before it is linked is still found."""
    signed = _signed(
        event.originator_id, event.originator_version, event.topic, event.state
    )
    message = b"hero seal" + position.to_bytes(8, "big", signed=True) + signed
    return hmac.digest(key or chain_keys()[0].secret, message, "sha256")


def _sealed_by(
    keys: Sequence[ChainKey], position: int, event: StoredEvent, stored: bytes | None
) -> ChainKey | None:
    """The key whose seal ``stored`` is, if any."""
    if stored is None:
        return None
    for key in keys:
        if hmac.compare_digest(seal(position, event, key.secret), stored):
            return key
    return None


def links(previous: bytes | None, events: Sequence[StoredEvent]) -> list[bytes]:
    """The links of ``events``, stored in this order after ``previous``."""
    key = chain_keys()[0].secret
    result = []
    for event in events:
        previous = link(previous, event, key)
        result.append(previous)
    return result


class Unlinked:
    """PostgreSQL: the committed events not linked yet, read in the round trip
    of the statements queued with them (a pipeline), and their links.

    The rows read are those up to the horizon (:mod:`hero.store.ordering`):
    every event before them is committed, so links are made in store order
    and the linked events are always a prefix of the store. With
    ``own_marks``, the reader's own reserved positions bound the horizon too:
    a writer links the events committed before its own, which it has not
    inserted yet. One process links at a time: ``wait`` waits for the
    linker's advisory lock (held until the transaction ends); without it, a
    reader that does not get it at once links nothing. At most ``limit``
    events are read, the first ones (:attr:`full` says whether there were
    that many); ``linked_to``, a position known to be linked (the last of a
    batch before), lets the server find the last link from there rather than
    from the store's end, past every event not linked yet.
    """

    def __init__(
        self,
        cursor: Any,
        *,
        wait: bool,
        own_marks: bool,
        limit: int,
        linked_to: int | None = None,
    ) -> None:
        # Lazy: the store is importable before Django has loaded the models.
        from hero.store.ordering import LINKER_LOCK

        # A cursor of its own, read once the results are in. The function
        # reads the events with a statement of its own after the lock: in
        # READ COMMITTED it sees what an earlier linker committed, and one
        # snapshot holds the last link (its position NULL) and the events.
        self._rows = cursor.db.cursor()
        self._rows.execute(
            "SELECT * FROM hero_unlinked(%s, %s, %s, %s, %s)",
            [LINKER_LOCK, wait, own_marks, limit, linked_to],
        )
        self._limit = limit
        #: Whether :meth:`links` read as many events as it could, and linked
        #: them all: there may be more to link.
        self.full = False

    def links(self) -> list[tuple[bytes, int]]:
        """(link, position) of each event to link, in store order: none if the
        linker's lock was not free, and none from the first event whose seal
        does not hold (an edit or a forgery, which ``hero_verify`` reports)."""
        with self._rows:
            rows = self._rows.fetchall()  # none if the lock was not free
        # Apart and in order, whatever order the union's branches came in.
        last = next((row for row in rows if row[0] is None), None)
        rows = sorted((row for row in rows if row[0] is not None), key=_position)
        if not rows:
            return []
        self.full = len(rows) == self._limit
        keys = chain_keys()
        key = keys[0].secret
        previous = bytes(last[5]) if last else None
        result = []
        for position, originator, version, topic, state, sealed in rows:
            event = StoredEvent(originator, version, topic, bytes(state))
            if _sealed_by(keys, position, event, sealed and bytes(sealed)) is None:
                self.full = False
                break
            previous = link(previous, event, key)
            result.append((previous, position))
        return result


def _position(row: tuple[Any, ...]) -> int:
    return int(row[0])


def link_updates(cursor: Any, table: str, links: list[tuple[bytes, int]]) -> None:
    """Write links made by :class:`Unlinked`, dropping the seals they replace."""
    if not links:
        return
    if len(links) == 1:
        cursor.execute(
            f"UPDATE {table} SET chain = %s, seal = NULL WHERE id = %s", links[0]
        )
        return
    # Many (a backlog's batch): one statement, one plan for them all.
    values = ", ".join(["(%s::bytea, %s::bigint)"] * len(links))
    cursor.execute(
        f"UPDATE {table} SET chain = linked.chain, seal = NULL "
        f"FROM (VALUES {values}) AS linked (chain, id) "
        f"WHERE {table}.id = linked.id",
        [value for pair in links for value in pair],
    )


def keep_linkers_away(cursor: Any) -> None:
    """PostgreSQL: take the linker's lock until this transaction ends, before
    it updates committed events (``forget()`` empties their data keys).

    A linker updates the events it links; one that met a row this
    transaction locked would wait for this transaction, which may be the
    caller's. Holding the linker's lock instead (shared: transactions doing
    this do not wait for one another), linkers that do not wait (writers,
    the linking after a commit) link nothing meanwhile and leave it to the
    next one; only ``hero_verify`` waits. Taking it waits at most for one
    linker's short transaction."""
    # Lazy: the store is importable before Django has loaded the models.
    from hero.store.ordering import LINKER_LOCK

    if cursor.db.vendor == "postgresql":
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [LINKER_LOCK])


def link_committed(
    alias: str | None = None,
    *,
    wait: bool = True,
    limit: int | None = None,
    until: Callable[[], bool] = lambda: False,
) -> int:
    """PostgreSQL: link the committed events not linked yet, in store order,
    :data:`LINK_BATCH` at most in each short transaction; return how many were
    linked.

    Writers on PostgreSQL store each event with its :func:`seal` and no link
    (they do not wait for one another, so none knows the link before its own
    when it writes). A writer in a transaction of hero's own links the events
    before its own on the way (:class:`Unlinked`); one in the caller's
    transaction calls this at the caller's commit; with async projections,
    neither does, and ``hero_project`` calls this every half second;
    ``hero_verify`` calls it too, and so links what a process that died after
    its commit left. The links are computed here, with a key the database
    never sees.

    ``limit``: link at most so many (the first ones), leaving the rest to the
    next linker; None links them all, a batch after another, however many a
    stopped worker left, unless ``until`` (asked between two batches) says
    to stop. Without ``wait``, nothing is linked while another process links
    (it may link these events too; otherwise the next linker does).
    """
    # Lazy: the store is importable before Django has loaded the models.
    from django.db import connections

    alias = alias or conf.HERO_DATABASE
    if connections[alias].vendor != "postgresql":
        return 0
    linked = 0
    linked_to: int | None = None
    while (limit is None or linked < limit) and not (linked and until()):
        batch = LINK_BATCH if limit is None else min(LINK_BATCH, limit - linked)
        links, full = _link_batch(alias, wait=wait, limit=batch, linked_to=linked_to)
        linked += len(links)
        if not full:
            break
        linked_to = links[-1][1]
    return linked


def _link_batch(
    alias: str, *, wait: bool, limit: int, linked_to: int | None
) -> tuple[list[tuple[bytes, int]], bool]:
    """Link the first ``limit`` events not linked yet (after ``linked_to``, if
    known), in a transaction of their own where the caller has none; return
    their links and positions, and whether there may be more."""
    # Lazy: the store is importable before Django has loaded the models.
    from django.db import connections, transaction

    from hero.models import StoredEvent as StoredEventModel
    from hero.store.postgres import pipelined, pipelined_transaction

    connection = connections[alias]
    table = connection.ops.quote_name(StoredEventModel._meta.db_table)
    in_callers = connection.in_atomic_block
    with ExitStack() as stack:
        # A transaction of its own where the caller has none: one pipeline,
        # BEGIN and COMMIT in it (two round trips in all).
        own = stack.enter_context(pipelined_transaction(connection))
        if not own:
            stack.enter_context(transaction.atomic(using=alias))
        cursor = stack.enter_context(connection.cursor())
        with pipelined(cursor):
            if not in_callers:
                # Links are made again from the sealed events if a crash
                # loses them, and a later commit that reaches the disk takes
                # this one with it (the WAL is written in order): the commit
                # need not wait for the disk, nor the next linker for it.
                cursor.execute("SET LOCAL synchronous_commit = off")
            unlinked = Unlinked(
                cursor, wait=wait, own_marks=False, limit=limit, linked_to=linked_to
            )
            links = unlinked.links()
        link_updates(cursor, table, links)
    return links, unlinked.full


def link_after_commit(alias: str | None = None) -> int:
    """What a writer in the caller's transaction asks for at the caller's
    commit: :func:`link_committed`, unless another process is linking at that
    moment, and one batch at most (the caller's request waits for it).
    Writers then never queue behind one another's linking; the events left
    are linked by the next linker (a writer, a follower, ``hero_verify``),
    and sealed until then."""
    return link_committed(alias, wait=False, limit=LINK_BATCH)


class _SQLiteChain(threading.local):
    """SQL functions that compute the chain inside SQLite's INSERT statement, so
    that reading the last link and writing the next take one statement (and the
    write lock is taken before anything is read). They run in this process."""

    previous: bytes = GENESIS
    key: bytes = b""

    def start(self, previous: bytes | None, *fields: Any) -> bytes:
        self.previous = previous or GENESIS
        self.key = chain_keys()[0].secret
        return self.next(*fields)

    def next(self, originator: str, version: int, topic: str, state: bytes) -> bytes:
        message = self.previous + _signed(originator, version, topic, state)
        self.previous = hmac.digest(self.key, message, "sha256")
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
    """The values of a row of an INSERT on SQLite whose link starts from the
    last stored one, up to its link (no parentheses: the caller adds the
    row's other columns); its parameters: the event's four fields, twice."""
    return (
        "%s, %s, %s, %s, hero_chain_start((SELECT chain FROM "
        f"{events_table} ORDER BY id DESC LIMIT 1), %s, %s, %s, %s)"
    )


#: A further row of the same INSERT, linked to the row before it.
SQLITE_NEXT_ROW_SQL = "%s, %s, %s, %s, hero_chain_next(%s, %s, %s, %s)"


@dataclass(frozen=True)
class Stretch:
    """Consecutive events linked with one key."""

    first: int
    last: int
    key: ChainKey


@dataclass(frozen=True)
class ChainCheck:
    """The result of checking the store's chain."""

    checked: int
    broken_at: int | None = None
    head: bytes | None = None
    #: The position of the last event checked (the head's position).
    head_position: int | None = None
    #: Which key verified which events, in store order.
    stretches: list[Stretch] = field(default_factory=list)
    #: With an anchor to check: whether the chain holds that link at that position.
    anchored: bool | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None and self.anchored is not False


def stored_rows(batch_size: int, alias: str | None = None) -> Any:
    """Every stored event as (position, originator, version, topic, state,
    link, seal), in store order and in batches: all positions, 0 and below
    included."""
    # Lazy: the store is importable before Django has loaded the models.
    from hero.models import StoredEvent as StoredEventModel

    events = StoredEventModel.objects.using(alias or conf.HERO_DATABASE)
    events = events.order_by("id")
    fields = (
        "id",
        "originator_id",
        "originator_version",
        "topic",
        "state",
        "chain",
        "seal",
    )
    last = None
    while True:
        selected = events if last is None else events.filter(id__gt=last)
        rows = list(selected.values_list(*fields)[:batch_size])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def verify_chain(
    batch_size: int = 5000, *, anchor: tuple[int, bytes] | None = None
) -> ChainCheck:
    """Recompute the chain over every stored event, in store order, with the
    current key and the fallbacks, and report the first position whose stored
    link none of them gives (the event there, or one before it, was edited,
    deleted, moved or forged).

    ``anchor`` is a (position, link) kept elsewhere, such as an earlier head:
    the chain must hold that link at that position, which also catches events
    removed from the end of the store and a rewrite by someone with the key.
    """
    keys = chain_keys()
    key = keys[0]
    previous, checked = GENESIS, 0
    stretches: list[Stretch] = []
    position = None
    anchored = False
    head_position = None
    unlinked = False
    for rows in stored_rows(batch_size):
        for position, originator, version, topic, state, stored, sealed in rows:
            event = StoredEvent(originator, version, topic, bytes(state))
            stored_link = None if stored is None else bytes(stored)
            if stored_link is None or unlinked:
                # Not linked yet (PostgreSQL links after the commit): its seal
                # must hold, and no linked event may follow it.
                sealed_by = _sealed_by(
                    keys, position, event, None if sealed is None else bytes(sealed)
                )
                if stored_link is not None or sealed_by is None:
                    return ChainCheck(checked, broken_at=position, stretches=stretches)
                unlinked = True
                checked += 1
                continue
            expected = link(previous, event, key.secret)
            if stored_link != expected:
                matching = [
                    k for k in keys if link(previous, event, k.secret) == stored_link
                ]
                if not matching or stored_link is None:
                    return ChainCheck(checked, broken_at=position, stretches=stretches)
                key, expected = matching[0], stored_link
            if stretches and stretches[-1].key == key:
                stretches[-1] = Stretch(stretches[-1].first, position, key)
            else:
                stretches.append(Stretch(position, position, key))
            previous = expected
            head_position = position
            checked += 1
            if anchor is not None and position == anchor[0]:
                anchored = expected == anchor[1]
    return ChainCheck(
        checked,
        head=previous if head_position is not None else None,
        head_position=head_position,
        stretches=stretches,
        anchored=None if anchor is None else anchored,
    )


def rekey(alias: str | None = None, *, batch_size: int = 1000) -> int:
    """Link every stored event again with the current key; return how many.

    Each stored link is first checked against the keys that may have made it
    (the current key and the fallbacks), so that re-keying never launders an
    edit: a link none of them gives raises :class:`ChainBroken` and changes
    nothing. Runs in one transaction that holds the store's ordering lock, so
    no event is written meanwhile.
    """
    # Lazy: the store is importable before Django has loaded the models.
    from django.db import connections, transaction

    from hero.models import StoredEvent as StoredEventModel
    from hero.store.ordering import hold_ordering_lock
    from hero.store.postgres import pipelined

    alias = alias or conf.HERO_DATABASE
    all_keys = chain_keys()
    keys = [k.secret for k in all_keys]
    current = keys[0]
    table = StoredEventModel._meta.db_table
    count = 0
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        with pipelined(cursor):
            hold_ordering_lock(cursor)
        old_previous, new_previous = GENESIS, GENESIS
        for rows in stored_rows(batch_size, alias):
            updates = []
            for position, originator, version, topic, state, stored, sealed in rows:
                event = StoredEvent(originator, version, topic, bytes(state))
                stored_link = None if stored is None else bytes(stored)
                made = [link(old_previous, event, key) for key in keys]
                if stored_link is None and _sealed_by(
                    all_keys, position, event, None if sealed is None else bytes(sealed)
                ):
                    # Not linked yet: its seal holds; it is linked now.
                    stored_link = made[0]
                if stored_link is None or stored_link not in made:
                    raise ChainBroken(
                        f"The chain is broken at position {position}: the event "
                        "there, or one before it, was edited, deleted, moved or "
                        "forged. Nothing was re-linked; find out what changed "
                        "(hero_verify) before linking the store again."
                    )
                old_previous = stored_link
                new_previous = link(new_previous, event, current)
                updates.append((new_previous, position))
            cursor.executemany(
                f"UPDATE {connections[alias].ops.quote_name(table)} "
                "SET chain = %s, seal = NULL WHERE id = %s",
                updates,
            )
            count += len(updates)
    return count

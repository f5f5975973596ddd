"""Sealing what a site passes about a user, so that forgetting the user erases it.

Each event class names its personal fields (``PERSONAL``: the state an unlock
was given, a repeatable award's key, a revocation's reason and actor). Before an
event is stored, those fields are sealed together with AES-256-GCM under a data
key of the event's user, into one ``sealed`` member of the stored JSON
(:meth:`Sealer.seal`); the mapper then leaves the plain fields out. Forgetting
the user deletes the key: the ciphertexts stay in the store, under the hash
chain, and nobody can open them again (crypto-shredding).

Where the keys live:

- Each user's data key (32 random bytes) is stored in ``hero_user_key``
  *wrapped*: encrypted with a wrapping key derived from the chain key
  (:func:`hero.store.chain.chain_keys`), which the database never holds. The
  database alone opens nothing.
- A key is made with the user's first event that carries something personal,
  in the transaction of that event. An event with nothing personal (no state,
  no key, no reason, no actor) is stored as it is and needs no key.
- No data key is looked up by user in the process: each seal and each open
  reads the wrapped key from the database (an award, with its aggregate's
  events), so a key deleted by ``forget()`` in another process opens nothing
  here either. Only the unwrapping is cached (:class:`_Unwrapped`), by the
  wrapped key: it saves the AES work, and an entry whose row is gone can no
  longer be looked up (it leaves memory as newer keys push it out).

:func:`open_payload` is the one place that decrypts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from hero.events.personal import FORGOTTEN_VALUES, personal_fields, set_opener
from hero.store.chain import ChainKey, chain_keys
from hero.store.sql import insert_missing
from hero.store.transactions import DjangoDatastore, VersionConflict

#: The first character of every sealed payload: its format's version.
FORMAT = "1"
_NONCE = 12
_SALT = "hero.sealing"


def wrapping_key(chain_secret: bytes) -> bytes:
    """The key that wraps users' data keys, derived from a chain key."""
    return salted_hmac(
        _SALT, b"wrapping key", secret=chain_secret, algorithm="sha256"
    ).digest()


def _aad(user_pk: str) -> bytes:
    # Binds a wrapped key and a payload to their user: neither opens as another's.
    return b"hero user " + user_pk.encode()


@functools.lru_cache(maxsize=8)
def _wrapper(chain_secret: bytes) -> AESGCM:
    """The cipher that wraps data keys under one chain key."""
    return AESGCM(wrapping_key(chain_secret))


def _wrap(raw: bytes, user_pk: str, nonce: bytes | None = None) -> bytes:
    nonce = nonce or os.urandom(_NONCE)
    return nonce + _wrapper(chain_keys()[0].secret).encrypt(nonce, raw, _aad(user_pk))


def _new_key(user_pk: str) -> tuple[bytes, bytes]:
    """A new data key for the user: (raw, wrapped with the current chain key)."""
    random = os.urandom(32 + _NONCE)  # the key and its wrapping's nonce
    raw = random[:32]
    return raw, _wrap(raw, user_pk, random[32:])


class _Unwrapped:
    """The data keys of wrapped keys read from the database, as ciphers: the
    AES work of unwrapping, done once per wrapped key.

    Looked up only with a wrapped key just read from the database, so an entry
    opens nothing once its row is deleted (nothing here is looked up by user).
    Cleared when the chain keys change."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.ciphers: OrderedDict[tuple[bytes, str], AESGCM] = OrderedDict()
        self.keys: tuple[ChainKey, ...] = ()
        self.secrets: tuple[bytes, ...] = ()

    def _current(self) -> tuple[bytes, ...]:
        """The chain keys' secrets, the cache emptied if they changed."""
        keys = chain_keys()
        if keys is not self.keys:  # chain_keys() keeps one tuple per setting
            secrets = tuple(key.secret for key in keys)
            if secrets != self.secrets:
                self.ciphers.clear()
                self.secrets = secrets
            self.keys = keys
        return self.secrets

    def get(self, wrapped: bytes, user_pk: str) -> AESGCM | None:
        secrets = self._current()
        cipher = self.ciphers.get((wrapped, user_pk))
        if cipher is not None:
            return cipher
        for secret in secrets:
            try:
                raw = _wrapper(secret).decrypt(
                    wrapped[:_NONCE], wrapped[_NONCE:], _aad(user_pk)
                )
            except InvalidTag:
                continue
            return self.put(wrapped, user_pk, raw)
        return None

    def put(self, wrapped: bytes, user_pk: str, raw: bytes) -> AESGCM:
        """Keep a key just wrapped (with the current chain key)."""
        self._current()
        cipher = self.ciphers[(wrapped, user_pk)] = AESGCM(raw)
        if len(self.ciphers) > self.size:
            self.ciphers.popitem(last=False)
        return cipher


_unwrapped = _Unwrapped()


class UserKeys:
    """The wrapped data keys in ``hero_user_key`` of one database."""

    def __init__(self, datastore: DjangoDatastore) -> None:
        self.datastore = datastore

    def read(self, user_pks: Iterable[str]) -> dict[str, AESGCM]:
        """{user pk: data key, as a cipher} of those of ``user_pks`` that have one."""
        wanted = sorted(set(user_pks))
        if not wanted:
            return {}
        with self.datastore.cursor() as cursor:
            wrapped_keys = _wrapped_keys(cursor, wanted)
        found: dict[str, AESGCM] = {}
        for user_pk, wrapped in wrapped_keys.items():
            cipher = _unwrapped.get(wrapped, user_pk)
            if cipher is not None:
                found[user_pk] = cipher
        return found

    def for_writing(self, cursor: Any, user_pk: str, *, new: bool = False) -> AESGCM:
        """The user's data key, as a cipher, made (in the caller's transaction)
        if the user has none yet. Two writers making one at once: the first to
        commit wins, and the other reads the winner's.

        ``new`` says the key is wanted for an aggregate's first event, when the
        user may well have none: then the key is made first, in one statement
        for a user with none; a user with one costs a refused insert and a read
        (on PostgreSQL, one statement either way). Otherwise the key is read
        first, and made only if missing."""
        vendor = self.datastore.vendor
        for attempt in range(3):
            if not new or attempt:
                cursor.execute(
                    "SELECT wrapped FROM hero_user_key WHERE user_pk = %s", [user_pk]
                )
                row = cursor.fetchone()
                if row is not None:
                    return self._opened(bytes(row[0]), user_pk)
            raw, wrapped = _new_key(user_pk)
            statement, returns = _make_sql(vendor)
            try:
                cursor.execute(
                    statement,
                    [user_pk, wrapped, user_pk] if returns else [user_pk, wrapped],
                )
            except IntegrityError:
                # The user has one (SQLite and MySQL undo only the statement).
                continue
            if returns:
                row = cursor.fetchone()
                if row is None:
                    continue  # made by a transaction that committed meanwhile
                if bytes(row[0]) != wrapped:
                    return self._opened(bytes(row[0]), user_pk)
            # Kept as if read back: the next award reads this row.
            return _unwrapped.put(wrapped, user_pk, raw)
        raise RuntimeError(f"Could not make or read the data key of user {user_pk}.")

    def for_writing_many(
        self, cursor: Any, user_pks: Iterable[str]
    ) -> dict[str, AESGCM]:
        """The data keys of many users at once, as ciphers, made (in the
        caller's transaction) for those who have none: a batch of awards to
        many users (a backfill) reads them in one statement and makes the
        missing ones in another, not two per user. A key another writer made
        meanwhile is the one kept and returned."""
        wanted = sorted(set(user_pks))
        found = self._opened_all(_wrapped_keys(cursor, wanted))
        missing = [pk for pk in wanted if pk not in found]
        if missing:
            now = cursor.db.ops.adapt_datetimefield_value(timezone.now())
            rows = []
            for user_pk in missing:
                raw, wrapped = _new_key(user_pk)
                # Kept as if read back: the read below finds it without unwrapping.
                _unwrapped.put(wrapped, user_pk, raw)
                rows.append((user_pk, wrapped, now))
            cursor.executemany(
                insert_missing(
                    self.datastore.vendor,
                    "hero_user_key",
                    ("user_pk", "wrapped", "created_at"),
                    ("user_pk",),
                ),
                rows,
            )
            found.update(self._opened_all(_wrapped_keys(cursor, missing)))
        return found

    @staticmethod
    def _opened_all(wrapped_keys: Mapping[str, bytes]) -> dict[str, AESGCM]:
        return {pk: UserKeys._opened(w, pk) for pk, w in wrapped_keys.items()}

    def make(self, cursor: Any, user_pk: str) -> AESGCM:
        """A new data key for a user who had none when the aggregate was read.

        A plain insert, with no read: on PostgreSQL its result is not waited
        for (it goes in the pipeline of the award). Should another writer have
        made the user's key meanwhile, the insert fails, and the store takes it
        as a lost race (:class:`~hero.store.transactions.VersionConflict`): the
        award is decided again, and reads that key."""
        raw, wrapped = _new_key(user_pk)
        try:
            cursor.execute(
                _make_sql(self.datastore.vendor, plain=True)[0], [user_pk, wrapped]
            )
        except IntegrityError as error:  # refused at once (not in a pipeline)
            raise VersionConflict(
                f"Database {self.datastore.alias!r}: the key of user {user_pk} "
                "was made by another writer meanwhile."
            ) from error
        return _unwrapped.put(wrapped, user_pk, raw)

    @staticmethod
    def _opened(wrapped: bytes, user_pk: str) -> AESGCM:
        cipher = _unwrapped.get(wrapped, user_pk)
        if cipher is None:
            raise ValueError(
                f"The data key of user {user_pk} opens with none of the chain keys: "
                "HERO_CHAIN_KEY (or SECRET_KEY) changed without its old value "
                "among the fallbacks."
            )
        return cipher

    def delete(self, cursor: Any, user_pk: str) -> None:
        """Delete the user's data key: what it sealed can never be opened again."""
        cursor.execute("DELETE FROM hero_user_key WHERE user_pk = %s", [user_pk])


def rewrap_keys(alias: str, batch_size: int = 1000) -> int:
    """Wrap every user's data key again with the current chain key (after the
    chain key changed, before its old value leaves the fallbacks); return how
    many were wrapped again. A key that opens with none of the chain keys is
    left as it is."""
    secrets = [key.secret for key in chain_keys()]
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT user_pk, wrapped FROM hero_user_key ORDER BY user_pk")
        rows = cursor.fetchall()
        updates = []
        for user_pk, stored in rows:
            wrapped = bytes(stored)
            for n, secret in enumerate(secrets):
                try:
                    raw = _wrapper(secret).decrypt(
                        wrapped[:_NONCE], wrapped[_NONCE:], _aad(user_pk)
                    )
                except InvalidTag:
                    continue
                if n:  # opened with an old key: wrap it with the current one
                    updates.append((_wrap(raw, user_pk), user_pk))
                break
        for start in range(0, len(updates), batch_size):
            cursor.executemany(
                "UPDATE hero_user_key SET wrapped = %s WHERE user_pk = %s",
                updates[start : start + batch_size],
            )
    return len(updates)


def _wrapped_keys(cursor: Any, user_pks: Sequence[str]) -> dict[str, bytes]:
    """{user pk: wrapped key} of those of ``user_pks`` that have one, read
    with ``cursor`` (in the caller's transaction), 500 users a statement."""
    found: dict[str, bytes] = {}
    for start in range(0, len(user_pks), 500):
        chunk = user_pks[start : start + 500]
        cursor.execute(
            "SELECT user_pk, wrapped FROM hero_user_key WHERE user_pk IN "
            f"({', '.join(['%s'] * len(chunk))})",
            chunk,
        )
        found.update((pk, bytes(wrapped)) for pk, wrapped in cursor.fetchall())
    return found


#: Now, in UTC, as each backend stores a datetime (the database's clock: one
#: parameter fewer to make and send).
_NOW_SQL = {
    "postgresql": "now()",
    "mysql": "UTC_TIMESTAMP(6)",
    "sqlite": "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')",
}


@functools.cache
def _make_sql(vendor: str, *, plain: bool = False) -> tuple[str, bool]:
    """The statement that makes a user's key (parameters: the user's pk and
    the wrapped key), and whether it returns the key then in the table (the
    one made, or the one there).

    PostgreSQL: the insert and a read of the row in one statement (the pk is
    given again), taking no lock on an existing key (a failed statement would
    abort the transaction); a key committed by another transaction after the
    statement began is not seen, and the caller tries again. SQLite, MariaDB
    and MySQL, or with ``plain``: a plain insert, which fails on the key there
    (undoing only itself), and the caller reads that key: for a new user, one
    statement and no read."""
    now = _NOW_SQL.get(vendor, "CURRENT_TIMESTAMP")
    insert = (
        "INSERT INTO hero_user_key (user_pk, wrapped, created_at) "
        f"VALUES (%s, %s, {now})"
    )
    if vendor == "postgresql" and not plain:
        return (
            f"WITH made AS ({insert} ON CONFLICT (user_pk) DO NOTHING RETURNING "
            "wrapped) SELECT wrapped FROM made UNION ALL SELECT wrapped FROM "
            "hero_user_key WHERE user_pk = %s",
            True,
        )
    return insert, False


_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def seal_values(cipher: AESGCM, user_pk: str, values: Mapping[str, Any]) -> str:
    """``values`` sealed under a user's data key, as text for the stored JSON."""
    nonce = os.urandom(_NONCE)
    plain = _encode(values).encode()
    sealed = cipher.encrypt(nonce, plain, _aad(user_pk))
    return FORMAT + base64.b64encode(nonce + sealed).decode("ascii")


def open_payload(
    user_pk: str, payload: str | None, key: AESGCM | None = None
) -> dict[str, Any] | None:
    """The values sealed in ``payload`` for the user, or None when they cannot
    be opened (the user was forgotten, or ``payload`` is not a sealed one).

    The one place that decrypts. Reads the user's wrapped key from the
    database unless ``key`` (read just now by :meth:`UserKeys.read`) is given.
    """
    if not payload:
        return None
    if payload.startswith("{"):
        # A ledger entry of an event stored before sealing: its plain values.
        values: dict[str, Any] = json.loads(payload)
        return values
    if not payload.startswith(FORMAT):
        return None
    if key is None:
        key = _keys().read([user_pk]).get(user_pk)
        if key is None:
            return None
    try:
        blob = base64.b64decode(payload[len(FORMAT) :], validate=True)
        opened_bytes = key.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(user_pk))
    except (InvalidTag, binascii.Error, ValueError):
        return None
    opened: dict[str, Any] = json.loads(opened_bytes)
    return opened


def _keys() -> UserKeys:
    # Lazy: the settings name the database, and may change under tests.
    from hero.conf import conf

    return UserKeys(DjangoDatastore(conf.HERO_DATABASE))


def is_sealed(payload: Any) -> bool:
    """Whether ``payload`` is a sealed one (not None, not plain values)."""
    return isinstance(payload, str) and payload.startswith(FORMAT)


class Sealer:
    """Seals the personal fields of events before the ledger stores them."""

    def __init__(self, datastore: DjangoDatastore) -> None:
        self.keys = UserKeys(datastore)

    def seal(
        self,
        cursor: Any,
        events: Sequence[Any],
        read: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """Give each event with personal fields its ``sealed`` member: its
        fields that hold something, sealed under its user's key, or None when
        none does (then no key is needed). The plain values stay on the event
        in memory, for the projections of this transaction; the mapper stores only the
        sealed ones. ``read``: users' wrapped keys read from the database in
        this call (with their aggregates' events; None: the user had none),
        used without reading again."""
        keys: dict[str, AESGCM] = {}
        waiting: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for event in events:
            names = personal_fields(type(event))
            if not names:
                continue
            state = event.__dict__
            if is_sealed(state.get("sealed")):
                continue  # sealed already (an event read back and stored again)
            # Empty fields (no state, no key) stay plain: they say nothing, and
            # an award without a key is then decided without opening anything.
            values = {name: state[name] for name in names if state.get(name)}
            if not values:
                state["sealed"] = None
                continue
            waiting.append((state, values))
        unread = {
            s["user_pk"] for s, _ in waiting if not (read and s["user_pk"] in read)
        }
        if len(unread) > 1:
            # Many users' events (a backfill's batch): their keys at once.
            keys.update(self.keys.for_writing_many(cursor, unread))
        for state, values in waiting:
            user_pk = state["user_pk"]
            key = keys.get(user_pk)
            if key is None and read and user_pk in read:
                wrapped = read[user_pk]
                key = keys[user_pk] = (
                    UserKeys._opened(wrapped, user_pk)
                    if wrapped is not None
                    else self.keys.make(cursor, user_pk)
                )
            if key is None:
                # An aggregate's first event: likely the user's first, too.
                new = state.get("originator_version") == 1
                key = keys[user_pk] = self.keys.for_writing(cursor, user_pk, new=new)
            state["sealed"] = seal_values(key, user_pk, values)


def _open_event(event: Any) -> dict[str, Any]:
    """The personal fields of an event read back from the store: opened, or
    the values that stand for them once its user was forgotten."""
    opened = open_payload(event.__dict__["user_pk"], event.__dict__.get("sealed"))
    return _opened_fields(event, opened)


def _opened_fields(event: Any, opened: dict[str, Any] | None) -> dict[str, Any]:
    # The fields not stored plain: as opened, or as a forgotten user's read.
    missing = [n for n in personal_fields(type(event)) if n not in event.__dict__]
    if opened is None:
        return {name: FORGOTTEN_VALUES.get(name) for name in missing}
    return {name: opened.get(name, FORGOTTEN_VALUES.get(name)) for name in missing}


def open_events(events: Iterable[Any]) -> list[Any]:
    """Open the personal fields of many events read back from the store, with
    one read of their users' keys (rather than one per event). Returns those
    that could not be opened: their users were forgotten."""
    waiting = [
        event
        for event in events
        if is_sealed(event.__dict__.get("sealed"))
        and any(name not in event.__dict__ for name in personal_fields(type(event)))
    ]
    if not waiting:
        return []
    unopened = []
    keys = _keys().read(event.__dict__["user_pk"] for event in waiting)
    for event in waiting:
        user_pk = event.__dict__["user_pk"]
        key = keys.get(user_pk)
        opened = (
            open_payload(user_pk, event.__dict__["sealed"], key)
            if key is not None
            else None
        )
        if opened is None:
            unopened.append(event)
        event.__dict__.update(_opened_fields(event, opened))
    return unopened


set_opener(_open_event)

"""Sealing what a site passes about a user, so that forgetting the user erases it.

Each event class names its personal fields (``PERSONAL``: the state an unlock
was given, a repeatable award's key, a revocation's reason and actor). Before an
event is stored, those fields are sealed together with AES-256-GCM under a data
key of the event's aggregate (one user's one achievement, or the user's trigger
log), into one ``sealed`` member of the stored JSON (:meth:`Sealer.seal`); the
mapper then leaves the plain fields out. Forgetting the user deletes the keys:
the ciphertexts stay in the store, under the hash chain, and nobody can open
them again (crypto-shredding).

Where the keys live:

- An aggregate's data key (32 random bytes) is stored *wrapped* (encrypted with
  a wrapping key derived from the chain key, :func:`hero.store.chain.chain_keys`,
  which the database never holds) in the ``data_key`` column of the event it
  was made with: the aggregate's first event that carries something personal,
  or its first such event after its user was forgotten. The event's own INSERT
  writes it, so a key costs no statement and no page of its own. A sealed
  payload names the version of that event (``"2<version>.<base64>"``), and the
  wrapped key is bound to that event's aggregate and version: moved to another
  row, it opens nothing. The database alone opens nothing.
- ``data_key`` is outside the chain, which covers an event's fields only:
  forgetting a user sets it to NULL on the events of the user's aggregates,
  and the chain still verifies.
- Events sealed before keys lived with the events have payloads ``"1..."``,
  sealed under one key per user, wrapped in ``hero_user_key``. They are
  opened as before; forgetting deletes that key too. Nothing makes new ones.
- An event with nothing personal (no state, no key, no reason, no actor) is
  stored as it is and needs no key.
- No data key is looked up by aggregate or user in the process: each seal uses
  the key read with the aggregate's events in that call, and each open reads
  the wrapped key from the database, so a key deleted by ``forget()`` in
  another process opens nothing here either. Only the unwrapping is cached
  (:class:`_Unwrapped`), by the wrapped key: it saves the AES work, and an
  entry whose row is gone can no longer be looked up (it leaves memory as
  newer keys push it out).

:func:`open_payload` and :func:`open_events` are where payloads are opened.
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
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import connections, transaction
from django.utils.crypto import salted_hmac

from hero.events.personal import FORGOTTEN_VALUES, personal_fields, set_opener
from hero.store.chain import ChainKey, chain_keys
from hero.store.recorders import DjangoAggregateRecorder
from hero.store.transactions import DjangoDatastore

#: The first character of a payload sealed under an aggregate's key.
FORMAT = "2"
#: That of a payload sealed under a key of the user's (``hero_user_key``).
USER_FORMAT = "1"
_NONCE = 12
_SALT = "hero.sealing"

#: (the wrapped key, what it is bound to): see :func:`key_binding`.
Wrapped = tuple[bytes, bytes]


def wrapping_key(chain_secret: bytes) -> bytes:
    """The key that wraps data keys, derived from a chain key."""
    return salted_hmac(
        _SALT, b"wrapping key", secret=chain_secret, algorithm="sha256"
    ).digest()


def _aad(user_pk: str) -> bytes:
    # Binds a payload (and a user's key) to its user: neither opens as another's.
    return b"hero user " + user_pk.encode()


def key_binding(aggregate_id: UUID, version: int) -> bytes:
    """What an aggregate's wrapped key is bound to: its aggregate and the
    version of the event that holds it."""
    return b"hero key " + aggregate_id.bytes + version.to_bytes(8, "big")


@functools.lru_cache(maxsize=8)
def _wrapper(chain_secret: bytes) -> AESGCM:
    """The cipher that wraps data keys under one chain key."""
    return AESGCM(wrapping_key(chain_secret))


def _wrap(raw: bytes, binding: bytes, nonce: bytes | None = None) -> bytes:
    nonce = nonce or os.urandom(_NONCE)
    return nonce + _wrapper(chain_keys()[0].secret).encrypt(nonce, raw, binding)


def _unwrap(wrapped: bytes, binding: bytes, secret: bytes) -> bytes:
    return _wrapper(secret).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], binding)


class _Unwrapped:
    """The data keys of wrapped keys read from the database, as ciphers: the
    AES work of unwrapping, done once per wrapped key.

    Looked up only with a wrapped key just read from the database, so an entry
    opens nothing once its row is gone (nothing here is looked up by user or
    aggregate). Cleared when the chain keys change."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.ciphers: OrderedDict[Wrapped, AESGCM] = OrderedDict()
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

    def get(self, wrapped: bytes, binding: bytes) -> AESGCM | None:
        secrets = self._current()
        cipher = self.ciphers.get((wrapped, binding))
        if cipher is not None:
            return cipher
        for secret in secrets:
            try:
                raw = _unwrap(wrapped, binding, secret)
            except InvalidTag:
                continue
            return self._keep((wrapped, binding), AESGCM(raw))
        return None

    def make(self, binding: bytes) -> tuple[AESGCM, bytes]:
        """A new data key bound to ``binding``: (the key as a cipher, kept as
        if read back; the key wrapped with the current chain key)."""
        self._current()  # empties the cache if the chain keys changed
        random = os.urandom(32 + _NONCE)  # the key and its wrapping's nonce
        raw = random[:32]
        wrapped = _wrap(raw, binding, random[32:])
        return self._keep((wrapped, binding), AESGCM(raw)), wrapped

    def _keep(self, entry: Wrapped, cipher: AESGCM) -> AESGCM:
        self.ciphers[entry] = cipher
        if len(self.ciphers) > self.size:
            self.ciphers.popitem(last=False)
        return cipher


_unwrapped = _Unwrapped()


def _opened(wrapped: bytes, binding: bytes, whose: str) -> AESGCM:
    cipher = _unwrapped.get(wrapped, binding)
    if cipher is None:
        raise ValueError(
            f"The data key of {whose} opens with none of the chain keys: "
            "HERO_CHAIN_KEY (or SECRET_KEY) changed without its old value "
            "among the fallbacks."
        )
    return cipher


def new_key(aggregate_id: UUID, version: int) -> tuple[AESGCM, bytes]:
    """A new data key for an aggregate, to be stored with its event at
    ``version``: (the key as a cipher, the key wrapped with the current chain
    key)."""
    # Kept as if read back: the aggregate's next award reads this key.
    return _unwrapped.make(key_binding(aggregate_id, version))


class DataKeys:
    """The wrapped data keys of one database: aggregates' keys in the events'
    ``data_key`` column (read and written by the store's recorder), and users'
    keys of earlier events in ``hero_user_key``."""

    def __init__(self, recorder: DjangoAggregateRecorder) -> None:
        self.recorder = recorder

    def of_users(self, user_pks: Iterable[str]) -> dict[str, AESGCM]:
        """{user pk: key, as a cipher} of those of ``user_pks`` that have one in
        ``hero_user_key`` (payloads sealed before keys lived with events)."""
        wanted = sorted(set(user_pks))
        found: dict[str, AESGCM] = {}
        with self.recorder.datastore.cursor() as cursor:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                cursor.execute(
                    "SELECT user_pk, wrapped FROM hero_user_key WHERE user_pk IN "
                    f"({', '.join(['%s'] * len(chunk))})",
                    chunk,
                )
                for user_pk, wrapped in cursor.fetchall():
                    cipher = _unwrapped.get(bytes(wrapped), _aad(user_pk))
                    if cipher is not None:
                        found[user_pk] = cipher
        return found

    def of_aggregates(
        self, aggregate_ids: Iterable[UUID]
    ) -> dict[tuple[UUID, int], AESGCM]:
        """{(aggregate id, version): key, as a cipher} of the keys held by
        events of those aggregates."""
        found: dict[tuple[UUID, int], AESGCM] = {}
        for aggregate_id, version, wrapped in self.recorder.select_data_keys(
            aggregate_ids
        ):
            cipher = _unwrapped.get(wrapped, key_binding(aggregate_id, version))
            if cipher is not None:
                found[(aggregate_id, version)] = cipher
        return found

    def at_position(self, position: int, version: int) -> AESGCM | None:
        """The key held by the event at ``version`` of the aggregate of the
        event at ``position`` (a ledger entry's), if it is there."""
        found = self.recorder.select_data_key_at(position, version)
        if found is None:
            return None
        aggregate_id, wrapped = found
        return _unwrapped.get(wrapped, key_binding(aggregate_id, version))

    def delete(self, cursor: Any, user_pk: str, aggregate_ids: Sequence[UUID]) -> None:
        """Delete a user's keys (those of ``aggregate_ids``, which are the
        user's, and the user's own): what they sealed can never be opened
        again."""
        cursor.execute("DELETE FROM hero_user_key WHERE user_pk = %s", [user_pk])
        self.recorder.empty_data_keys(aggregate_ids)


def rewrap_keys(alias: str, batch_size: int = 1000) -> int:
    """Wrap every data key again with the current chain key (after the chain
    key changed, before its old value leaves the fallbacks); return how many
    were wrapped again. A key that opens with none of the chain keys is left
    as it is."""
    secrets = [key.secret for key in chain_keys()]

    def again(wrapped: bytes, binding: bytes) -> bytes | None:
        for n, secret in enumerate(secrets):
            try:
                raw = _unwrap(wrapped, binding, secret)
            except InvalidTag:
                continue
            return _wrap(raw, binding) if n else None  # n: opened with an old key
        return None

    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT user_pk, wrapped FROM hero_user_key ORDER BY user_pk")
        users = [
            (new, user_pk)
            for user_pk, stored in cursor.fetchall()
            if (new := again(bytes(stored), _aad(user_pk))) is not None
        ]
        for start in range(0, len(users), batch_size):
            cursor.executemany(
                "UPDATE hero_user_key SET wrapped = %s WHERE user_pk = %s",
                users[start : start + batch_size],
            )
        # The events' keys, one per aggregate: a batch at a time.
        recorder = DjangoAggregateRecorder(DjangoDatastore(alias))
        events, after = 0, 0
        while rows := recorder.select_data_keys_after(after, batch_size):
            after = rows[-1][0]
            updates = [
                (new, position)
                for position, aggregate_id, version, stored in rows
                if (new := again(stored, key_binding(aggregate_id, version)))
                is not None
            ]
            recorder.replace_data_keys(updates)
            events += len(updates)
    return len(users) + events


_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def seal_values(
    cipher: AESGCM, user_pk: str, values: Mapping[str, Any], key_version: int
) -> str:
    """``values`` sealed under a data key held by the event at ``key_version``
    of their aggregate, as text for the stored JSON."""
    nonce = os.urandom(_NONCE)
    sealed = cipher.encrypt(nonce, _encode(values).encode(), _aad(user_pk))
    text = binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")
    return f"{FORMAT}{key_version}.{text}"


def _parse(payload: str) -> tuple[int | None, str] | None:
    """(the version holding its key, or None for a user's key; the base64
    text) of a sealed payload, or None if it is not one."""
    if payload.startswith(FORMAT):
        version, dot, text = payload[len(FORMAT) :].partition(".")
        if dot and version.isdigit():
            return int(version), text
        return None
    if payload.startswith(USER_FORMAT):
        return None, payload[len(USER_FORMAT) :]
    return None


def _decrypt(cipher: AESGCM, user_pk: str, text: str) -> dict[str, Any] | None:
    try:
        blob = base64.b64decode(text, validate=True)
        opened_bytes = cipher.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(user_pk))
    except (InvalidTag, binascii.Error, ValueError):
        return None
    opened: dict[str, Any] = json.loads(opened_bytes)
    return opened


def open_payload(
    user_pk: str,
    payload: str | None,
    *,
    aggregate_id: UUID | None = None,
    position: int | None = None,
) -> dict[str, Any] | None:
    """The values sealed in ``payload`` for the user, or None when they cannot
    be opened (the user was forgotten, or ``payload`` is not a sealed one).

    Reads the key from the database: the user's for a payload sealed under
    one, else that of the payload's aggregate, named by ``aggregate_id`` or by
    the ``position`` of one of its events (a ledger entry's)."""
    if not payload:
        return None
    if payload.startswith("{"):
        # A ledger entry of an event stored before sealing: its plain values.
        values: dict[str, Any] = json.loads(payload)
        return values
    parsed = _parse(payload)
    if parsed is None:
        return None
    version, text = parsed
    keys = _keys()
    cipher: AESGCM | None
    if version is None:
        cipher = keys.of_users([user_pk]).get(user_pk)
    elif aggregate_id is not None:
        cipher = keys.of_aggregates([aggregate_id]).get((aggregate_id, version))
    elif position is not None:
        cipher = keys.at_position(position, version)
    else:
        raise TypeError("open_payload() needs the aggregate_id or position")
    return None if cipher is None else _decrypt(cipher, user_pk, text)


def _keys() -> DataKeys:
    # Lazy: the settings name the database, and may change under tests.
    from hero.conf import conf

    return DataKeys(DjangoAggregateRecorder(DjangoDatastore(conf.HERO_DATABASE)))


def is_sealed(payload: Any) -> bool:
    """Whether ``payload`` is a sealed one (not None, not plain values)."""
    return isinstance(payload, str) and payload[:1] in (FORMAT, USER_FORMAT)


#: What was read of an aggregate's key with its events: (the version of the
#: event holding it, the key wrapped), or None when none of its events holds one.
ReadKey = tuple[int, bytes] | None


class Sealer:
    """Seals the personal fields of events before the store records them."""

    def seal(
        self, events: Sequence[Any], read: Mapping[UUID, ReadKey] | None = None
    ) -> dict[tuple[UUID, int], bytes]:
        """Give each event with personal fields its ``sealed`` member: its
        fields that hold something, sealed under its aggregate's key, or None
        when none does (then no key is needed). The plain values stay on the
        event in memory, for the projections of this transaction; the mapper
        stores only the sealed ones.

        ``read``: the aggregates' keys as read with their events in this call.
        An aggregate with none there, or not read so, gets a new key with the
        first of these events that needs one. Returns the new keys, wrapped,
        by (aggregate id, version) of the event that stores each."""
        made: dict[tuple[UUID, int], bytes] = {}
        keys: dict[UUID, tuple[AESGCM, int]] = {}
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
            aggregate_id = state["originator_id"]
            key = keys.get(aggregate_id)
            if key is None:
                found = read.get(aggregate_id) if read else None
                if found is not None:
                    version, wrapped = found
                    binding = key_binding(aggregate_id, version)
                    cipher = _opened(wrapped, binding, f"aggregate {aggregate_id}")
                else:
                    version = state["originator_version"]
                    cipher, made[(aggregate_id, version)] = new_key(
                        aggregate_id, version
                    )
                key = keys[aggregate_id] = (cipher, version)
            state["sealed"] = seal_values(key[0], state["user_pk"], values, key[1])
        return made


def _open_event(event: Any) -> dict[str, Any]:
    """The personal fields of an event read back from the store: opened, or
    the values that stand for them once its user was forgotten."""
    state = event.__dict__
    opened = open_payload(
        state["user_pk"], state.get("sealed"), aggregate_id=state["originator_id"]
    )
    return _opened_fields(event, opened)


def _opened_fields(event: Any, opened: dict[str, Any] | None) -> dict[str, Any]:
    # The fields not stored plain: as opened, or as a forgotten user's read.
    missing = [n for n in personal_fields(type(event)) if n not in event.__dict__]
    if opened is None:
        return {name: FORGOTTEN_VALUES.get(name) for name in missing}
    return {name: opened.get(name, FORGOTTEN_VALUES.get(name)) for name in missing}


def open_events(events: Iterable[Any]) -> list[Any]:
    """Open the personal fields of many events read back from the store, with
    one read of their keys (rather than one per event). Returns those that
    could not be opened: their users were forgotten."""
    waiting = []
    for event in events:
        state = event.__dict__
        sealed = state.get("sealed")
        if not is_sealed(sealed) or all(
            name in state for name in personal_fields(type(event))
        ):
            continue
        parsed = _parse(sealed)
        if parsed is not None:
            waiting.append((event, parsed))
    if not waiting:
        return []
    keys = _keys()
    users = keys.of_users(
        e.__dict__["user_pk"] for e, (version, _) in waiting if version is None
    )
    aggregates = keys.of_aggregates(
        e.__dict__["originator_id"] for e, (v, _) in waiting if v is not None
    )
    unopened = []
    for event, (version, text) in waiting:
        state = event.__dict__
        user_pk = state["user_pk"]
        cipher = (
            users.get(user_pk)
            if version is None
            else aggregates.get((state["originator_id"], version))
        )
        opened = None if cipher is None else _decrypt(cipher, user_pk, text)
        if opened is None:
            unopened.append(event)
        state.update(_opened_fields(event, opened))
    return unopened


set_opener(_open_event)

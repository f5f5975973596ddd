"""The ledger: hero's eventsourcing application, which decides and records.

A call flows one way: ``hero.achievements.unlock()`` asks each listening
achievement for a level, then :meth:`Ledger.record_awards` loads the
(user, achievement) aggregates, lets them decide, and saves their new events in
one transaction (joining the caller's). Listeners registered with
:func:`add_save_listener` (the inline projections) run inside that transaction;
this module knows nothing of them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from django.db import IntegrityError as DjangoIntegrityError
from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.persistence import (
    IntegrityError,
    Mapper,
    Recording,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import Environment, EnvType

from hero.conf import conf
from hero.events import (
    Outcome,
    Progress,
    Revocation,
    TriggerLog,
    UserAchievement,
    user_achievement_id,
)
from hero.events.aggregates import trigger_log_id
from hero.events.personal import personal_fields
from hero.exceptions import InvalidUser, UnlockConflict
from hero.mapping import EventMapper, SubclassAwareTranscoder
from hero.sealing import DataKeys, Sealer, open_events
from hero.store.ordering import hold_log_locks
from hero.store.postgres import pipelined
from hero.store.recorders import DjangoApplicationRecorder, EventsAndKey
from hero.store.transactions import DjangoDatastore, VersionConflict, translate_errors
from hero.users import user_model, user_pk_adapter

SaveListener = Callable[[Sequence[Recording[UUID]]], None]
#: Called in the transaction of forget(), with the user's pk and the events
#: that recorded it.
ForgetListener = Callable[[str, Sequence[Recording[UUID]]], None]
#: What one decision did: an unlock or upgrade, progress, or a revocation.
Effect = Outcome | Progress | Revocation
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Decision:
    """What one achievement answered for one unlock call."""

    achievement_id: str
    #: Award this level (unlock or upgrade).
    level: int | None = None
    #: Or: progress to ``steps`` of ``total``, unlocking at ``level`` on completion.
    steps: int | None = None
    total: int | None = None
    #: Or: the requirements are no longer met; revoke if held.
    unmet: bool = False
    #: The award's key, for a repeatable achievement (awarded once per key).
    key: str | None = None


class LevelsSeen:
    """The level each (user, achievement) held when this process last decided
    on it: a hint, never a fact the decision rests on, of whether a call will
    write anything, for :meth:`Ledger._retrying` to reserve positions ahead.
    At most :attr:`SIZE` entries, forgotten all at once when full."""

    SIZE = 8192

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: dict[tuple[str, str], int | None] = {}

    def clear(self) -> None:
        self._levels.clear()

    def note(self, user_pk: str, achievement_id: str, level: int | None) -> None:
        levels = self._levels
        if len(levels) >= self.SIZE:
            levels.clear()
        levels[user_pk, achievement_id] = level

    def likely_writes(self, user_pk: str, decisions: Sequence[Decision]) -> int:
        """How many of ``decisions`` likely write an event: all but those that
        revoke if held (mostly nothing held) and awards of a level seen held."""
        levels = self._levels
        count = 0
        for decision in decisions:
            if decision.unmet:
                continue
            if (
                decision.level is not None
                and decision.steps is None
                and not decision.key
            ):
                held = levels.get((user_pk, decision.achievement_id))
                if held is not None and held >= decision.level:
                    continue
            count += 1
        return count


_save_listeners: list[SaveListener] = []


def add_save_listener(listener: SaveListener) -> None:
    """Call ``listener(recordings)`` inside the transaction of every save."""
    if listener not in _save_listeners:
        _save_listeners.append(listener)


def remove_save_listener(listener: SaveListener) -> None:
    if listener in _save_listeners:
        _save_listeners.remove(listener)


_forget_listeners: list[ForgetListener] = []


def add_forget_listener(listener: ForgetListener) -> None:
    """Call ``listener(user_pk, recordings)`` inside the transaction of every
    :meth:`Ledger.forget`, after its events are saved."""
    if listener not in _forget_listeners:
        _forget_listeners.append(listener)


def remove_forget_listener(listener: ForgetListener) -> None:
    if listener in _forget_listeners:
        _forget_listeners.remove(listener)


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Apply hero's events in order (eventsourcing's default projector also
    checks each event against a runtime protocol, which costs more than the
    replay itself).

    The keys of a repeatable achievement's awards decide, so those events are
    opened first, with one read of their keys (an award without a key has
    its empty key stored plain, and needs no opening)."""
    events = list(events)
    keyed = [e for e in events if "key" in personal_fields(type(e))]
    if any("key" not in e.__dict__ for e in keyed):
        open_events(keyed)
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class Ledger(Application[UUID]):
    """Decides on unlocks through aggregates and records their events."""

    name = "hero"
    # Made by hero.store's factory (PERSISTENCE_MODULE below).
    recorder: DjangoApplicationRecorder

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.datastore = DjangoDatastore(alias)
        #: Seals the personal fields of events before they are stored (None:
        #: stored plain, as the benchmarks compare).
        self.sealer: Sealer | None = Sealer()
        self._levels_seen = LevelsSeen()
        super().__init__(
            env={"PERSISTENCE_MODULE": "hero.store", "DJANGO_DATABASE": alias}
        )

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """hero's options from Django settings only (``HERO_STORE_OPTIONS``).

        eventsourcing reads the process environment too, where variables such as
        ``COMPRESSOR_TOPIC`` may be meant for another application in the same
        process: they must never change how hero reads or writes its events.
        """
        return Environment(name, {**conf.HERO_STORE_OPTIONS, **(env or {})})

    def construct_transcoder(self) -> Transcoder:
        transcoder = SubclassAwareTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_mapper(self) -> Mapper[UUID]:
        mapper_class = None if self.env.get("MAPPER_TOPIC") else EventMapper
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=mapper_class
        )

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for listener in list(_save_listeners):
            listener(recordings)

    def record(self, aggregates: Sequence[Any]) -> list[Recording[UUID]]:
        """Save the pending events of hero's own aggregates.

        What :meth:`save` does, without its check of each object against
        eventsourcing's runtime protocols (these are hero's own aggregates).
        """
        processing = ProcessingEvent[UUID]()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        if self.sealer is not None:
            read = {
                aggregate.id: found[0]
                for aggregate in aggregates
                if (found := aggregate.__dict__.get("_read_key")) is not None
            }
            data_keys = self.sealer.seal(processing.events, read)
            if data_keys:  # stored by the events' own INSERT
                processing.saved_kwargs["data_keys"] = data_keys
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def decode_rows(
        self, rows: Iterable[tuple[int, Any, int, str, Any]]
    ) -> list[tuple[int, Any]]:
        """(position, domain event) for each row of ``recorder.select_rows()``."""
        mapper = self.mapper
        if isinstance(mapper, EventMapper):
            decode = mapper.decode
            return [(row[0], decode(row[1], row[2], row[3], row[4])) for row in rows]
        # A mapper of the site's own (MAPPER_TOPIC): through stored events.
        return [
            (
                row[0],
                mapper.to_domain_event(
                    StoredEvent(
                        row[1] if isinstance(row[1], UUID) else UUID(row[1]),
                        row[2],
                        row[3],
                        bytes(row[4]),
                    )
                ),
            )
            for row in rows
        ]

    def user_achievement(
        self, user_pk: str, achievement_id: str, read: EventsAndKey | None = None
    ) -> UserAchievement:
        """The aggregate of one user's one achievement, blank if it has no events.

        Without snapshots, the aggregate's data key is read in the same
        statement as its events, for sealing what the decision records (see
        :meth:`record`); an aggregate with none gets one with its next event
        that needs one. Should the user be forgotten before that is saved, the
        save meets the ``Forgotten`` event's version and decides again.
        ``read``: those, read already (:meth:`_read_many`)."""
        if self.snapshots is None and self.sealer is not None:
            aggregate_id = user_achievement_id(user_pk, achievement_id)
            stored, key = read or self.recorder.select_events_and_key(aggregate_id)
            to_event = self.mapper.to_domain_event
            found: UserAchievement = (
                replay(None, [to_event(s) for s in stored])
                if stored
                else UserAchievement.start(user_pk, achievement_id)
            )
            # Bookkeeping of the ledger's, not domain state: the key as read
            # (None: the aggregate had none then).
            found.__dict__["_read_key"] = (key,)
            return found
        try:
            aggregate: UserAchievement = self.repository.get(
                user_achievement_id(user_pk, achievement_id), projector_func=replay
            )
        except AggregateNotFoundError:
            return UserAchievement.start(user_pk, achievement_id)
        return aggregate

    def _read_many(
        self, user_pk: str, decisions: Sequence[Decision]
    ) -> dict[str, EventsAndKey]:
        """For a call on several of one user's achievements, their aggregates'
        events and keys by achievement, read in one statement for
        :meth:`user_achievement` to take instead of a statement each (none
        for one achievement, or through snapshots)."""
        if len(decisions) < 2 or self.snapshots is not None or self.sealer is None:
            return {}
        ids = {
            d.achievement_id: user_achievement_id(user_pk, d.achievement_id)
            for d in decisions
        }
        if len(ids) < 2:
            return {}
        read = self.recorder.select_events_and_keys(sorted(ids.values()))
        return {achievement_id: read[i] for achievement_id, i in ids.items()}

    @property
    def _reserves_ahead(self) -> bool:
        """Whether a call may reserve its positions with its read
        (:meth:`_retrying`): on PostgreSQL, where the aggregates are read with
        their events' positions, which the writes must come after (not
        through snapshots)."""
        return (
            self.datastore.vendor == "postgresql"
            and self.snapshots is None
            and self.sealer is not None
        )

    def user_achievements(
        self, user_pks: Iterable[str], achievement_id: str
    ) -> dict[str, UserAchievement]:
        """The aggregates of many users' one achievement (blank for those with
        no events), their events read in a few queries rather than one each."""
        ids = {user_achievement_id(pk, achievement_id): pk for pk in user_pks}
        rows = self.recorder.select_rows_of(list(ids))
        events: dict[UUID, list[Any]] = {}
        for _, event in self.decode_rows(rows):
            events.setdefault(event.originator_id, []).append(event)
        aggregates = {}
        for aggregate_id, user_pk in ids.items():
            found = events.get(aggregate_id)
            aggregates[user_pk] = (
                replay(None, found)
                if found
                else UserAchievement.start(user_pk, achievement_id)
            )
        return aggregates

    def record_awards(
        self,
        user_pk: str,
        decisions: Sequence[Decision | tuple[str, int]],
        *,
        trigger: str,
        state: dict[str, Any],
        log_trigger: bool = False,
        awarded_at: datetime | None = None,
    ) -> list[Effect]:
        """Let each achievement's aggregate decide, and save what changed.

        All events of the call are saved in one transaction. Losing a race to a
        concurrent writer of the same aggregate (the database refuses a second
        event at the same version) means: reload, decide again, retry.
        """
        wanted = [
            d if isinstance(d, Decision) else Decision(d[0], level=d[1])
            for d in decisions
        ]

        # The hint of what a call writes serves only where it may reserve
        # ahead; a trigger log's lock is taken before the store's, so nothing
        # is reserved ahead with it.
        seen = self._levels_seen if self._reserves_ahead else None

        def decide() -> tuple[list[Effect], list[Any]]:
            changes: list[Effect] = []
            pending: list[Any] = []
            reads = self._read_many(user_pk, wanted)
            for decision in wanted:
                achievement_id = decision.achievement_id
                aggregate = self.user_achievement(
                    user_pk, achievement_id, reads.get(achievement_id)
                )
                changes.extend(
                    self._decide(aggregate, decision, trigger, state, awarded_at)
                )
                if seen is not None:
                    seen.note(user_pk, achievement_id, aggregate.level)
                if aggregate.pending_events:
                    pending.append(aggregate)
            if log_trigger:
                pending.append(self._logged_trigger(user_pk, trigger, state))
            return changes, pending

        ahead = 0
        if seen is not None and not log_trigger:
            ahead = seen.likely_writes(user_pk, wanted)
        return self._retrying(
            decide, f"recording {trigger!r} for user {user_pk}", user_pk, ahead=ahead
        )

    def revoke(
        self,
        user_pk: str,
        achievement_id: str,
        *,
        reason: str,
        actor: str | None,
        key: str | None = None,
    ) -> Revocation:
        """Revoke an achievement the user holds, or one award of it with ``key``
        (``NotHeldError`` if not held)."""
        revocation = self._change_by_hand(
            user_pk,
            achievement_id,
            lambda aggregate: aggregate.revoke(reason=reason, actor=actor, key=key),
            f"revoking {achievement_id!r} of user {user_pk}",
        )
        assert isinstance(revocation, Revocation)
        return revocation

    def grant(
        self,
        user_pk: str,
        achievement_id: str,
        *,
        level: int,
        reason: str,
        actor: str | None,
    ) -> Outcome:
        """Grant an achievement at ``level`` (``AlreadyHeldError`` if the user
        holds it at that level or higher)."""
        outcome = self._change_by_hand(
            user_pk,
            achievement_id,
            lambda aggregate: aggregate.grant(level, reason=reason, actor=actor),
            f"granting {achievement_id!r} to user {user_pk}",
        )
        assert isinstance(outcome, Outcome)
        return outcome

    def _change_by_hand(
        self,
        user_pk: str,
        achievement_id: str,
        change: Callable[[UserAchievement], Effect],
        what: str,
    ) -> Effect:
        """Let one aggregate make one change asked for by hand, and record it,
        deciding again after losing a race."""

        def decide() -> tuple[list[Effect], list[Any]]:
            aggregate = self.user_achievement(user_pk, achievement_id)
            return [change(aggregate)], [aggregate]

        (effect,) = self._retrying(decide, what, user_pk)
        return effect

    @staticmethod
    def _decide(
        aggregate: UserAchievement,
        decision: Decision,
        trigger: str,
        state: dict[str, Any],
        awarded_at: datetime | None,
    ) -> Sequence[Effect]:
        if decision.steps is not None:
            assert decision.total is not None and decision.level is not None
            return aggregate.progress(
                decision.steps,
                decision.total,
                completion_level=decision.level,
                trigger=trigger,
                state=state,
                awarded_at=awarded_at,
            )
        if decision.unmet:
            if not aggregate.held:
                return []
            return [
                aggregate.revoke(
                    reason=f"requirements no longer met ({trigger})", actor=None
                )
            ]
        assert decision.level is not None
        outcome = aggregate.award(
            decision.level,
            trigger=trigger,
            state=state,
            awarded_at=awarded_at,
            key=decision.key,
        )
        return [] if outcome is None else [outcome]

    def _retrying(
        self,
        decide: Callable[[], tuple[list[_Result], list[Any]]],
        what: str,
        user_pk: str | None = None,
        *,
        ahead: int = 0,
    ) -> list[_Result]:
        """Decide and record; after losing a race (another writer changed the same
        aggregate first), wait a little and decide again on the new state.

        With ``ahead`` (the events the decision will likely write, where
        :attr:`_reserves_ahead`), the transaction is opened first and the writer's first
        statements (the store shared, positions reserved) travel with the
        decision's reads, in one round trip; positions the decision does not
        use are left as gaps."""
        attempts = max(1, conf.HERO_UNLOCK_ATTEMPTS)
        early = ahead > 0
        for attempt in range(1, attempts + 1):
            pending: list[Any] = []
            if not early:
                changes, pending = decide()
                if not pending:
                    return changes
            in_callers_transaction = self.datastore.connection.in_atomic_block
            try:
                with self.datastore.owned_transaction():
                    # Found now, not when the caller commits: asked first (and
                    # locked on PostgreSQL), its answer read once the writes are
                    # sent, with the positions' (no round trip of its own).
                    check = (
                        _UserCheck(self, user_pk, lock=True)
                        if user_pk is not None and in_callers_transaction
                        else None
                    )
                    closing: AbstractContextManager[Any] = check or nullcontext()
                    with closing:
                        if early:
                            self.recorder.reserve_ahead(ahead)
                            changes, pending = decide()
                            if not pending:
                                self.datastore.discard()
                        if pending:
                            self._place_triggers(pending)
                            self.record(pending)
                            if check is not None:
                                check.require()
            except VersionConflict as error:
                if attempt == attempts:
                    raise UnlockConflict(
                        f"Gave up {what} after {attempts} attempts: other writers kept "
                        "changing the same achievements. Raise HERO_UNLOCK_ATTEMPTS if "
                        "this is expected."
                    ) from error
                # Others made progress; let them finish before deciding again.
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            except (DjangoIntegrityError, IntegrityError):
                # A foreign key failed: at commit where they are deferred
                # (PostgreSQL, SQLite), at the row on MariaDB and MySQL. Is the
                # user gone?
                if user_pk is not None:
                    self._require_user(user_pk, lock=False)
                raise
            else:
                return changes
        raise AssertionError("unreachable")  # pragma: no cover

    def forget(self, user_pk: str, achievement_ids: Iterable[str]) -> int:
        """Forget a user: a :class:`~UserAchievement.Forgotten` event on each
        of the user's aggregates among ``achievement_ids`` that has events,
        the user's data keys and snapshots deleted, and the forget listeners
        (the read side) called, all in one transaction (joining the caller's).
        Returns the number of aggregates forgotten.

        Deleting the keys is what erases: every personal field of the user's
        events is sealed under one of them (those of the user's aggregates,
        each in the event it was made with, and the user's own key of events
        sealed before those). Snapshots hold aggregates' state (a
        repeatable achievement's keys), so they go too; later reads replay the
        events."""
        ids = [user_achievement_id(user_pk, a) for a in dict.fromkeys(achievement_ids)]
        attempts = max(1, conf.HERO_UNLOCK_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            events: dict[UUID, list[Any]] = {}
            for _, event in self.decode_rows(self.recorder.select_rows_of(ids)):
                events.setdefault(event.originator_id, []).append(event)
            aggregates = [replay(None, found) for found in events.values()]
            pending = [aggregate for aggregate in aggregates if aggregate.forget()]
            try:
                with self.datastore.owned_transaction():
                    recordings = self.record(pending) if pending else []
                    with self.datastore.transaction() as cursor:
                        DataKeys(self.recorder).delete(
                            cursor, user_pk, [*ids, trigger_log_id(user_pk)]
                        )
                        for start in range(0, len(ids), 500):
                            chunk = ids[start : start + 500]
                            cursor.execute(
                                "DELETE FROM hero_stored_snapshot WHERE originator_id "
                                f"IN ({', '.join(['%s'] * len(chunk))})",
                                [self.recorder._db_uuid(i) for i in chunk],
                            )
                    for listener in list(_forget_listeners):
                        listener(user_pk, recordings)
            except VersionConflict as error:
                if attempt == attempts:
                    raise UnlockConflict(
                        f"Gave up forgetting user {user_pk} after {attempts} attempts: "
                        "other writers kept changing the same achievements."
                    ) from error
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            else:
                return len(pending)
        raise AssertionError("unreachable")  # pragma: no cover

    def _require_user(self, user_pk: str, *, lock: bool) -> None:
        """Raise InvalidUser if the user no longer exists; with ``lock`` on
        PostgreSQL, also keep it from being deleted until the transaction ends."""
        with _UserCheck(self, user_pk, lock=lock) as check:
            check.require()

    def _place_triggers(self, pending: list[Any]) -> None:
        """Give logged triggers their version under their logs' locks, so
        that logging calls never collide (one user's calls take turns; other
        users' go on alongside). Where the transaction cannot hold them yet, a
        DEFERRED SQLite transaction, a collision is decided again like any
        other."""
        logs = [item.id for item in pending if isinstance(item, TriggerLog)]
        if not logs:
            return
        with self.datastore.cursor() as cursor:
            with pipelined(cursor):
                held = hold_log_locks(cursor, logs)
        if not held:
            return
        for index, item in enumerate(pending):
            if isinstance(item, TriggerLog):
                # A TriggerLog's only pending event is the one record() added.
                event = cast(TriggerLog.Triggered, item.pending_events[0])
                pending[index] = self._logged_trigger(
                    event.user_pk, event.trigger, event.state
                )

    def _logged_trigger(
        self, user_pk: str, trigger: str, state: dict[str, Any]
    ) -> TriggerLog:
        last = self.recorder.select_events(trigger_log_id(user_pk), desc=True, limit=1)
        log = TriggerLog.at_version(user_pk, last[0].originator_version if last else 0)
        log.record(user_pk, trigger, state)
        return log


_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.Lock()


def get_ledger() -> Ledger:
    """The ledger on the database named by ``HERO_DATABASE`` (one per process)."""
    alias = conf.HERO_DATABASE
    ledger = _ledgers.get(alias)
    if ledger is None:
        with _ledgers_lock:
            ledger = _ledgers.get(alias)
            if ledger is None:
                ledger = _ledgers[alias] = Ledger(alias)
    return ledger


class _UserCheck:
    """Whether a user still exists, asked now and answered by :meth:`require`:
    in a pipeline (PostgreSQL) the question travels with the statements after
    it, and its answer arrives with theirs. With ``lock`` on PostgreSQL, the
    user's row is kept from being deleted until the transaction ends. Its
    cursor is closed at the end of the ``with`` block."""

    __slots__ = ("alias", "cursor", "user_pk")

    def __init__(self, ledger: Ledger, user_pk: str, *, lock: bool) -> None:
        model = user_model()
        pk = model._meta.pk
        assert pk is not None
        connection = ledger.datastore.connection
        column_value = user_pk_adapter(connection)
        lock_clause = (
            " FOR KEY SHARE" if lock and ledger.datastore.vendor == "postgresql" else ""
        )
        self.alias, self.user_pk = ledger.datastore.alias, user_pk
        self.cursor = connection.cursor()
        with translate_errors(self.alias):
            self.cursor.execute(
                f"SELECT 1 FROM {connection.ops.quote_name(model._meta.db_table)} "
                f"WHERE {connection.ops.quote_name(pk.column)} = %s{lock_clause}",
                [column_value(user_pk)],
            )

    def __enter__(self) -> _UserCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cursor.close()

    def require(self) -> None:
        """Raise InvalidUser if the user was not found."""
        with translate_errors(self.alias):
            found = self.cursor.fetchone() is not None
        if not found:
            raise InvalidUser(
                f"User {self.user_pk} no longer exists (it was deleted meanwhile); "
                "nothing was recorded for it."
            )

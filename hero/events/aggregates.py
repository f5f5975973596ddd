"""hero's domain: what happened to one user's achievements, as immutable events.

One :class:`UserAchievement` aggregate per (user, achievement) pair, with a
deterministic id, decides whether a reported level unlocks or upgrades anything.
Its events are facts in the past tense. Each event's first occurrence in the
store may be any of them (an aggregate's history can begin with progress, and
a revoked achievement can be unlocked again), so there is no separate
"created" event: replaying an aggregate's first event starts a blank one.

Time never runs backwards in one aggregate's history: each event takes effect
(``awarded_at``, or a revocation's ``timestamp``) no earlier than the event
before it, even when the clock was set back or a backfill names an earlier
time. So replaying the events that took effect by a moment, as
``levels(user, at=...)`` does, never shows an upgrade without its unlock.

A *repeatable* achievement (``repeatable = True`` on its class) is awarded
once per key (``"answer:123"``): the aggregate keeps every key it awarded,
live or revoked, so a key is awarded at most once however often, or however
concurrently, it is reported. The first award is an ``Unlocked`` with its key;
each later one a :class:`UserAchievement.Repeated`. The level held is the
highest level of the awards still live.

Topics are explicit strings (``TOPIC``), registered with eventsourcing when the
classes are defined, so moving or renaming this module never breaks the replay of
stored events. Nothing here imports Django's ORM: the errors a decision
raises, :class:`~hero.exceptions.NotHeldError` and
:class:`~hero.exceptions.AlreadyHeldError`, are hero's public ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import BaseAggregate, CanMutateAggregate, DomainEvent

from hero.events.personal import HasPersonalFields
from hero.exceptions import AlreadyHeldError, NotHeldError

#: Namespace of hero's deterministic aggregate ids (never change it).
NAMESPACE = UUID("6f1f5b0e-94a9-4c39-9f3e-6e6c2a1d8b7a")


def _key(*parts: str) -> str:
    # Length-prefixed, so that no two different tuples of parts share a key.
    return "".join(f"{len(part)}:{part};" for part in parts)


@lru_cache(maxsize=4096)
def user_achievement_id(user_pk: str, achievement_id: str) -> UUID:
    """The id of the aggregate of one user's one achievement."""
    return uuid5(NAMESPACE, "user-achievement;" + _key(user_pk, achievement_id))


def trigger_log_id(user_pk: str) -> UUID:
    """The id of the aggregate that logs one user's unlock calls."""
    return uuid5(NAMESPACE, "trigger-log;" + _key(user_pk))


@dataclass(frozen=True)
class Outcome:
    """An unlock or upgrade that a decision recorded (returned to the caller).

    For a repeatable achievement, ``key`` names the award and ``times`` is how
    many awards the user holds after it; a repeat at or below the level held
    has ``previous_level == level``.
    """

    achievement_id: str
    level: int
    previous_level: int | None
    key: str | None = None
    times: int = 1

    @property
    def upgraded(self) -> bool:
        """True for a level upgrade, False for a first unlock (or a repeat that
        leaves the level as it was)."""
        return self.previous_level is not None and self.level > self.previous_level


@dataclass(frozen=True)
class Progress:
    """Progress that a decision recorded: ``steps`` of ``total``."""

    achievement_id: str
    steps: int
    previous_steps: int
    total: int

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.steps / self.total) if self.total else 0.0


@dataclass(frozen=True)
class Revocation:
    """A revocation that was recorded."""

    achievement_id: str
    level: int
    reason: str
    actor: str | None
    #: The one award revoked, of a repeatable achievement; None for all of it.
    key: str | None = None


class UserAchievement(BaseAggregate[UUID]):
    """One user's standing with one achievement: the level held, if any."""

    TOPIC = "hero:UserAchievement"

    user_pk: str
    achievement_id: str
    level: int | None
    unlocked_at: datetime | None
    steps: int
    revocations: int
    #: When the last event took effect. A class default too, for aggregates
    #: restored from snapshots taken before it existed.
    effective_at: datetime | None = None
    #: A repeatable achievement's awards: key -> its level while live, None
    #: once revoked (a key is never awarded twice). None until the first.
    awards: dict[str, int | None] | None = None
    #: The version of the last :class:`Forgotten` event, if any.
    forgotten_version: int | None = None

    def __init__(self) -> None:  # pragma: no cover - built by start() or replay
        raise TypeError("Use UserAchievement.start() or the ledger's repository")

    @classmethod
    def start(cls, user_pk: str, achievement_id: str) -> UserAchievement:
        """A blank aggregate, before its first event (version 0)."""
        aggregate = cls._blank(user_achievement_id(user_pk, achievement_id))
        aggregate.user_pk = user_pk
        aggregate.achievement_id = achievement_id
        return aggregate

    @classmethod
    def _blank(cls, aggregate_id: UUID) -> UserAchievement:
        aggregate = cls.__new__(cls)
        # No timestamp until the first event; eventsourcing's annotation wants one.
        aggregate.__base_init__(
            originator_id=aggregate_id,
            originator_version=0,
            timestamp=None,  # type: ignore[arg-type]
        )
        aggregate.level = None
        aggregate.unlocked_at = None
        aggregate.steps = 0
        aggregate.revocations = 0
        aggregate.effective_at = None
        return aggregate

    @property
    def held(self) -> bool:
        return self.level is not None

    @property
    def times(self) -> int:
        """How many awards of a repeatable achievement are live (1 for one held
        once, 0 when not held)."""
        if not self.awards:
            return 1 if self.held else 0
        return sum(1 for level in self.awards.values() if level is not None)

    def _effective(self, moment: datetime) -> datetime:
        """When an event meant to take effect at ``moment`` takes effect: then,
        or when the last event did if that is later (time never runs backwards
        in one history)."""
        last = self.effective_at
        return moment if last is None or moment >= last else last

    # Decisions ---------------------------------------------------------------

    def award(
        self,
        level: int,
        *,
        trigger: str,
        state: dict[str, Any],
        awarded_at: datetime | None = None,
        key: str | None = None,
    ) -> Outcome | None:
        """Unlock at ``level``, or upgrade to it; a level not above the one held
        changes nothing (and returns None).

        With a ``key`` (a repeatable achievement), award it once per key: the
        first award unlocks, each later one with a new key is a repeat (and an
        upgrade when its level is higher); a key awarded before, even one
        revoked since, changes nothing.

        ``awarded_at`` is when the award took effect, if not now (a backfill
        awards with the time of the original activity); never earlier than the
        last event, which is taken instead.
        """
        if key is not None and self.awards and key in self.awards:
            return None
        previous = self.level
        now = self.Unlocked.create_timestamp()
        when = {"timestamp": now, "awarded_at": self._effective(awarded_at or now)}
        if previous is None:
            self.trigger_event(
                self.Unlocked,
                **when,
                user_pk=self.user_pk,
                achievement_id=self.achievement_id,
                level=level,
                previous_level=None,
                trigger=trigger,
                state=state,
                key=key,
            )
            return Outcome(self.achievement_id, level, None, key)
        if key is not None:
            self.trigger_event(
                self.Repeated,
                **when,
                user_pk=self.user_pk,
                achievement_id=self.achievement_id,
                level=level,
                previous_level=previous,
                trigger=trigger,
                state=state,
                key=key,
            )
            return Outcome(
                self.achievement_id, max(level, previous), previous, key, self.times
            )
        if level > previous:
            self.trigger_event(
                self.LevelUpgraded,
                **when,
                user_pk=self.user_pk,
                achievement_id=self.achievement_id,
                level=level,
                previous_level=previous,
                trigger=trigger,
                state=state,
            )
        else:
            return None
        return Outcome(self.achievement_id, level, previous)

    def progress(
        self,
        steps: int,
        total: int,
        *,
        completion_level: int,
        trigger: str,
        state: dict[str, Any],
        awarded_at: datetime | None = None,
    ) -> list[Outcome | Progress]:
        """Record progress: ``steps`` of ``total`` (progress never goes back, and
        a repeated report changes nothing). Reaching ``total`` unlocks the
        achievement at ``completion_level`` if the user does not hold it."""
        changes: list[Outcome | Progress] = []
        previous = self.steps
        if steps > previous:
            now = self.Progressed.create_timestamp()
            self.trigger_event(
                self.Progressed,
                timestamp=now,
                user_pk=self.user_pk,
                achievement_id=self.achievement_id,
                steps=steps,
                previous_steps=previous,
                total=total,
                trigger=trigger,
                state=state,
                awarded_at=self._effective(awarded_at or now),
            )
            changes.append(Progress(self.achievement_id, steps, previous, total))
        if self.steps >= total and not self.held:
            outcome = self.award(
                completion_level, trigger=trigger, state=state, awarded_at=awarded_at
            )
            if outcome is not None:
                changes.append(outcome)
        return changes

    def revoke(
        self, *, reason: str, actor: str | None, key: str | None = None
    ) -> Revocation:
        """Take the achievement away; the user may unlock it again later.

        With a ``key``, take away only that award of a repeatable achievement:
        the achievement stays held while other awards are live."""
        if key is not None:
            return self._revoke_award(key, reason=reason, actor=actor)
        if self.level is None:
            raise NotHeldError(
                f"User {self.user_pk} does not hold {self.achievement_id!r}, so it "
                "cannot be revoked. Nothing was written."
            )
        level = self.level
        self.trigger_event(
            self.Revoked,
            # A revocation takes effect when it is recorded.
            timestamp=self._effective(self.Revoked.create_timestamp()),
            user_pk=self.user_pk,
            achievement_id=self.achievement_id,
            level=level,
            reason=reason,
            actor=actor,
        )
        return Revocation(self.achievement_id, level, reason, actor)

    def _revoke_award(self, key: str, *, reason: str, actor: str | None) -> Revocation:
        awards = self.awards or {}
        if self.level is None or awards.get(key) is None:
            raise NotHeldError(
                f"User {self.user_pk} holds no award of {self.achievement_id!r} with "
                f"the key {key!r}, so it cannot be revoked. Nothing was written."
            )
        remaining = [
            level for k, level in awards.items() if level is not None and k != key
        ]
        self.trigger_event(
            self.AwardRevoked,
            timestamp=self._effective(self.AwardRevoked.create_timestamp()),
            user_pk=self.user_pk,
            achievement_id=self.achievement_id,
            level=self.level,
            held_level=max(remaining) if remaining else None,
            key=key,
            reason=reason,
            actor=actor,
        )
        return Revocation(self.achievement_id, awards[key] or 0, reason, actor, key)

    def grant(self, level: int, *, reason: str, actor: str | None) -> Outcome:
        """Award ``level`` by hand, with why and by whom: unlock it, or upgrade
        to it. Granting what the user already holds at that level or higher
        raises AlreadyHeldError, as revoking what is not held raises
        NotHeldError."""
        previous = self.level
        if previous is not None and level <= previous:
            raise AlreadyHeldError(
                f"User {self.user_pk} already holds {self.achievement_id!r} at level "
                f"{previous}, so level {level} cannot be granted. Nothing was written."
            )
        now = self.Granted.create_timestamp()
        self.trigger_event(
            self.Granted,
            timestamp=now,
            user_pk=self.user_pk,
            achievement_id=self.achievement_id,
            level=level,
            previous_level=previous,
            reason=reason,
            actor=actor,
            awarded_at=now,
        )
        return Outcome(self.achievement_id, level, previous)

    def forget(self) -> bool:
        """Record that the user was forgotten: the level held and the progress
        are given up, and what the site passed for the user can no longer be
        read (the store erases it by deleting the user's keys). False, and
        nothing recorded, when there is nothing to forget: no event yet, or
        none since the user was last forgotten."""
        if self.version == 0 or self.forgotten_version == self.version:
            return False
        self.trigger_event(
            self.Forgotten,
            timestamp=self._effective(self.Forgotten.create_timestamp()),
            user_pk=self.user_pk,
            achievement_id=self.achievement_id,
            level=self.level,
            steps=self.steps,
        )
        return True

    # Events ------------------------------------------------------------------

    class Event(HasPersonalFields, CanMutateAggregate[UUID], DomainEvent):
        """Base of this aggregate's events: all name the user and achievement.

        ``PERSONAL`` names the fields that hold what the site passed for the
        user; the store keeps them sealed (see :mod:`hero.events.personal`)."""

        user_pk: str
        achievement_id: str

        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:
                aggregate = UserAchievement._blank(self.originator_id)
                aggregate.user_pk = self.user_pk
                aggregate.achievement_id = self.achievement_id
            return super().mutate(aggregate)

    class Unlocked(Event):
        """The user unlocked the achievement (first, or again after revocation).

        Version 2 added ``awarded_at``: when the award took effect, which differs
        from ``timestamp`` (when it was recorded) for backfilled awards.
        Version 3 added ``key``: the award's key, for a repeatable achievement
        (None otherwise, and in every event recorded before).
        """

        TOPIC: ClassVar[str] = "hero:UserAchievement.Unlocked"
        class_version: ClassVar[int] = 3
        PERSONAL: ClassVar[tuple[str, ...]] = ("state", "key")

        level: int
        previous_level: int | None
        trigger: str
        state: dict[str, Any]
        awarded_at: datetime
        # No default: a default would be a class attribute, read in place of a
        # sealed key that is not opened yet.
        key: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["awarded_at"] = state["timestamp"]

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["key"] = None

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.level = self.level
            aggregate.unlocked_at = self.awarded_at
            aggregate.effective_at = self.awarded_at
            if self.key is not None:
                aggregate.awards = {**(aggregate.awards or {}), self.key: self.level}

    class Repeated(Event):
        """A repeatable achievement the user holds was awarded again, for a new
        ``key``, at ``level``; the level held becomes the higher of ``level``
        and ``previous_level`` (the level held before)."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.Repeated"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("state", "key")

        level: int
        previous_level: int
        key: str
        trigger: str
        state: dict[str, Any]
        awarded_at: datetime

        @property
        def held_level(self) -> int:
            """The level held after this award."""
            return max(self.level, self.previous_level)

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.level = self.held_level
            aggregate.effective_at = self.awarded_at
            aggregate.awards = {**(aggregate.awards or {}), self.key: self.level}

    class LevelUpgraded(Event):
        """The user went up from ``previous_level`` to ``level``.

        Version 2 added ``awarded_at``, as :class:`Unlocked` did.
        """

        TOPIC: ClassVar[str] = "hero:UserAchievement.LevelUpgraded"
        class_version: ClassVar[int] = 2
        PERSONAL: ClassVar[tuple[str, ...]] = ("state",)

        level: int
        previous_level: int
        trigger: str
        state: dict[str, Any]
        awarded_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["awarded_at"] = state["timestamp"]

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.level = self.level
            aggregate.effective_at = self.awarded_at

    class Revoked(Event):
        """The achievement, held at ``level``, was taken away, and its progress
        with it (progress toward it starts again from zero)."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.Revoked"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("reason", "actor")

        level: int
        reason: str
        actor: str | None

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.level = None
            aggregate.unlocked_at = None
            aggregate.steps = 0
            aggregate.revocations += 1
            aggregate.effective_at = self.timestamp
            if aggregate.awards:
                # Every award goes, and its key is spent.
                aggregate.awards = dict.fromkeys(aggregate.awards)

    class AwardRevoked(Event):
        """One award of a repeatable achievement, ``key``, was taken away. The
        user held the achievement at ``level``, and now at ``held_level`` (None
        when no award is left: the achievement is no longer held). The key is
        spent: it is never awarded again."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.AwardRevoked"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("key", "reason", "actor")

        level: int
        held_level: int | None
        key: str
        reason: str
        actor: str | None

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.awards = {**(aggregate.awards or {}), self.key: None}
            aggregate.level = self.held_level
            if self.held_level is None:
                aggregate.unlocked_at = None
            aggregate.effective_at = self.timestamp

    class Progressed(Event):
        """The user's progress went from ``previous_steps`` to ``steps`` of ``total``."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.Progressed"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("state",)

        steps: int
        previous_steps: int
        total: int
        trigger: str
        state: dict[str, Any]
        awarded_at: datetime

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.steps = self.steps
            aggregate.effective_at = self.awarded_at

    class Granted(Event):
        """The achievement was granted by hand at ``level``: unlocked
        (``previous_level`` is None) or upgraded from ``previous_level``, with
        the ``reason`` and the ``actor`` who granted it. The counterpart of
        :class:`Revoked`; holdings treat it as an unlock or an upgrade."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.Granted"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("reason", "actor")

        level: int
        previous_level: int | None
        reason: str
        actor: str | None
        awarded_at: datetime

        def apply(self, aggregate: UserAchievement) -> None:
            if aggregate.level is None:
                aggregate.unlocked_at = self.awarded_at
            aggregate.level = self.level

    class Forgotten(Event):
        """The user was forgotten: the ``level`` held then (None if none) and
        the ``steps`` of progress were given up, and what the site passed for
        the user in earlier events can no longer be read. The events stay, so
        the store still shows that awards happened, and the chain verifies."""

        TOPIC: ClassVar[str] = "hero:UserAchievement.Forgotten"
        class_version: ClassVar[int] = 1

        level: int | None
        steps: int

        def apply(self, aggregate: UserAchievement) -> None:
            aggregate.level = None
            aggregate.unlocked_at = None
            aggregate.steps = 0
            aggregate.awards = None
            aggregate.effective_at = self.timestamp
            aggregate.forgotten_version = self.originator_version


class TriggerLog(BaseAggregate[UUID]):
    """One user's unlock calls, when ``HERO_RECORD_TRIGGERS`` is on.

    Only appended to, never replayed to decide anything, so it is written at a
    known version without loading its earlier events.
    """

    TOPIC = "hero:TriggerLog"

    def __init__(self) -> None:  # pragma: no cover - built by at_version()
        raise TypeError("Use TriggerLog.at_version()")

    @classmethod
    def at_version(cls, user_pk: str, version: int) -> TriggerLog:
        log = cls.__new__(cls)
        log.__base_init__(
            originator_id=trigger_log_id(user_pk),
            originator_version=version,
            timestamp=None,  # type: ignore[arg-type]  # as in _blank() above
        )
        return log

    def record(self, user_pk: str, trigger: str, state: dict[str, Any]) -> None:
        self.trigger_event(
            self.Triggered, user_pk=user_pk, trigger=trigger, state=state
        )

    class Event(HasPersonalFields, CanMutateAggregate[UUID], DomainEvent):
        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:
                aggregate = TriggerLog.__new__(TriggerLog)
                aggregate.__base_init__(
                    originator_id=self.originator_id,
                    originator_version=0,
                    timestamp=None,
                )
            return super().mutate(aggregate)

    class Triggered(Event):
        """``unlock(trigger, user=..., **state)`` was called for the user."""

        TOPIC: ClassVar[str] = "hero:TriggerLog.Triggered"
        class_version: ClassVar[int] = 1
        PERSONAL: ClassVar[tuple[str, ...]] = ("state",)

        user_pk: str
        trigger: str
        state: dict[str, Any]

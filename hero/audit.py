"""A user's history, read from the event store (the source of truth)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from hero.events import TriggerLog, UserAchievement, trigger_log_id, user_achievement_id
from hero.ledger import get_ledger
from hero.registry import registry
from hero.sealing import open_events
from hero.store.transactions import translate_errors


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a user's history."""

    kind: str  # unlocked, upgraded, repeated, revoked, progressed, triggered,
    # granted, forgotten
    achievement_id: str | None
    level: int | None
    previous_level: int | None
    event: str  # the name passed to unlock(), or "" (revocations, grants)
    state: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    total: int | None = None
    actor: str | None = None
    reason: str | None = None
    occurred_at: datetime | None = None  # when it took effect
    recorded_at: datetime | None = None  # when it was written
    position: int = 0  # the event's place in the store
    key: str | None = None  # the award's key, of a repeatable achievement
    #: The user was forgotten since: what the site passed (state, key, actor,
    #: reason) is erased, and reads as empty.
    forgotten: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("occurred_at", "recorded_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def known_achievement_ids(alias: str) -> list[str]:
    """Every achievement that may have events: registered or in the catalog."""
    # hero.models needs the app registry ready, and hero.achievements imports
    # this module, which a site may import before then (from its apps.py).
    from hero.models import Achievement

    ids = {a.id for a in registry}
    with translate_errors(alias):
        ids.update(Achievement.objects.using(alias).values_list("id", flat=True))
    return sorted(ids)


def history(
    user_pk: str,
    achievement_id: str | None = None,
    *,
    include_triggers: bool = True,
) -> list[HistoryEntry]:
    """The user's history, oldest first."""
    ledger = get_ledger()
    ids = [achievement_id] if achievement_id else known_achievement_ids(ledger.alias)
    originators = [user_achievement_id(user_pk, a) for a in ids]
    if include_triggers and achievement_id is None:
        originators.append(trigger_log_id(user_pk))
    notifications = ledger.recorder.select_notifications_of(originators)
    events = [(n.id, ledger.mapper.to_domain_event(n)) for n in notifications]
    unopened = {id(event) for event in open_events(event for _, event in events)}
    # Everything before a user's last Forgotten event of an achievement (or,
    # for the trigger log, of any) is forgotten, sealed or not (events stored
    # before sealing hold their values plain).
    forgotten_at: dict[str | None, int] = {}
    for position, event in events:
        if isinstance(event, UserAchievement.Forgotten):
            forgotten_at[event.achievement_id] = position
            forgotten_at[None] = position
    entries = []
    for (position, event), entry in zip(events, _entries(events), strict=True):
        key = getattr(event, "achievement_id", None)
        if id(event) in unopened or position < forgotten_at.get(key, 0):
            entry = replace(
                entry, state={}, key=None, actor=None, reason=None, forgotten=True
            )
        entries.append(entry)
    return entries


def _entries(events: Iterable[tuple[int, Any]]) -> Iterable[HistoryEntry]:
    for position, event in events:
        common = {"position": position, "recorded_at": event.timestamp}
        if isinstance(event, UserAchievement.Unlocked | UserAchievement.LevelUpgraded):
            kind = (
                "unlocked"
                if isinstance(event, UserAchievement.Unlocked)
                else "upgraded"
            )
            yield HistoryEntry(
                kind,
                event.achievement_id,
                event.level,
                event.previous_level,
                event.trigger,
                event.state,
                occurred_at=event.awarded_at,
                key=getattr(event, "key", None),
                **common,
            )
        elif isinstance(event, UserAchievement.Repeated):
            # level: this award's; previous_level: the level held before it.
            yield HistoryEntry(
                "repeated",
                event.achievement_id,
                event.level,
                event.previous_level,
                event.trigger,
                event.state,
                occurred_at=event.awarded_at,
                key=event.key,
                **common,
            )
        elif isinstance(event, (UserAchievement.AwardRevoked, UserAchievement.Revoked)):
            # level: the level still held after one key's award is revoked
            # (None: no award left, as after revoking them all).
            yield HistoryEntry(
                "revoked",
                event.achievement_id,
                getattr(event, "held_level", None),
                event.level,
                "",
                actor=event.actor,
                reason=event.reason,
                occurred_at=event.timestamp,
                key=getattr(event, "key", None),
                **common,
            )
        elif isinstance(event, UserAchievement.Progressed):
            yield HistoryEntry(
                "progressed",
                event.achievement_id,
                None,
                None,
                event.trigger,
                event.state,
                steps=event.steps,
                total=event.total,
                occurred_at=event.awarded_at,
                **common,
            )
        elif isinstance(event, UserAchievement.Granted):
            yield HistoryEntry(
                "granted",
                event.achievement_id,
                event.level,
                event.previous_level,
                "",
                actor=event.actor,
                reason=event.reason,
                occurred_at=event.awarded_at,
                **common,
            )
        elif isinstance(event, UserAchievement.Forgotten):
            # level: the level given up (None if none was held).
            yield HistoryEntry(
                "forgotten",
                event.achievement_id,
                None,
                event.level,
                "",
                occurred_at=event.timestamp,
                forgotten=True,
                **common,
            )
        elif isinstance(event, TriggerLog.Triggered):
            yield HistoryEntry(
                "triggered",
                None,
                None,
                None,
                event.trigger,
                event.state,
                occurred_at=event.timestamp,
                **common,
            )


def levels(user_pk: str, at: datetime | None = None) -> dict[str, int]:
    """{achievement id: level} the user holds now, or held at the moment ``at``:
    each achievement's events replayed in order up to the first that took
    effect after ``at``."""
    held: dict[str, int] = {}
    # Achievements whose history reached ``at``. Their later events take effect
    # later still (the aggregate keeps time from running backwards; this keeps
    # events recorded before it did from counting an upgrade before its unlock).
    ended: set[str] = set()
    for entry in history(user_pk, include_triggers=False):
        achievement_id = entry.achievement_id
        if not achievement_id or achievement_id in ended:
            continue
        if at is not None and entry.occurred_at is not None and entry.occurred_at > at:
            ended.add(achievement_id)
        elif entry.kind in ("unlocked", "upgraded", "granted") and entry.level:
            held[achievement_id] = entry.level
        elif entry.kind == "repeated" and entry.level:
            held[achievement_id] = max(entry.level, entry.previous_level or 0)
        elif entry.kind == "revoked" and entry.level:
            held[achievement_id] = entry.level  # one award revoked, others live
        elif entry.kind in ("revoked", "forgotten"):
            held.pop(achievement_id, None)
    return held

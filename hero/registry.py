"""Which achievement classes exist, and which listen to which event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hero.exceptions import DuplicateAchievement, UnknownAchievement

if TYPE_CHECKING:
    # Only named in annotations: hero.base imports this module to register
    # each achievement class as it is defined.
    from hero.base import AchievementBase


def _label(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class AchievementRegistry:
    """Registered achievement classes, one instance each, indexed by id and event.

    Registering a class twice is harmless. Two different classes with one id are
    kept as a conflict: :func:`register` raises at once, while a class registered
    by being defined is reported by system check ``hero.E005``.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[AchievementBase]] = {}
        self._instances: dict[str, AchievementBase] = {}
        self._by_event: dict[str, tuple[AchievementBase, ...]] = {}
        #: The listeners of each event whose name ``unlock()`` accepts: the name
        #: checked once here rather than on every call (events no achievement
        #: listens to, and invalid names, are not in it).
        self.checked_listeners: dict[str, tuple[AchievementBase, ...]] = {}
        self._unindexed: list[type[AchievementBase]] = []
        self.conflicts: list[
            tuple[str, type[AchievementBase], type[AchievementBase]]
        ] = []
        #: Grows with every change, so that what is derived from it can be cached.
        self.version = 0

    def add(self, cls: type[AchievementBase], *, explicit: bool) -> None:
        achievement_id = getattr(cls, "id", None)
        if not isinstance(achievement_id, str) or not achievement_id:
            # Reported by system check hero.E001; never listens to events.
            if cls not in self._unindexed:
                self._unindexed.append(cls)
            return
        existing = self._classes.get(achievement_id)
        if existing is not None and _label(existing) != _label(cls):
            if explicit:
                raise DuplicateAchievement(
                    f"Achievement id {achievement_id!r} is claimed by both "
                    f"{_label(existing)} and {_label(cls)}. Give one of them "
                    "another id (ids must never change once awarded)."
                )
            self.conflicts.append((achievement_id, existing, cls))
            return
        self._classes[achievement_id] = cls
        self._instances[achievement_id] = cls()
        self._reindex()

    def _reindex(self) -> None:
        by_event: dict[str, list[AchievementBase]] = {}
        for achievement in self._instances.values():
            events = getattr(achievement, "events", ())
            if isinstance(events, (list, tuple)):
                for event in events:
                    if isinstance(event, str):
                        by_event.setdefault(event, []).append(achievement)
        self._by_event = {event: tuple(items) for event, items in by_event.items()}
        # Imported here: hero.validation imports this module's registry.
        from hero.validation import is_event_name

        self.checked_listeners = {
            event: items
            for event, items in self._by_event.items()
            if is_event_name(event)
        }
        self.version += 1

    def remove(self, achievement_id: str) -> None:
        """Forget an achievement (for tests that define throwaway classes)."""
        self._classes.pop(achievement_id, None)
        self._instances.pop(achievement_id, None)
        self.conflicts = [c for c in self.conflicts if c[0] != achievement_id]
        self._reindex()

    def listeners(self, event: str) -> tuple[AchievementBase, ...]:
        return self._by_event.get(event, ())

    def get(self, achievement_id: str) -> AchievementBase:
        try:
            return self._instances[achievement_id]
        except KeyError:
            known = ", ".join(sorted(self._instances)) or "none are registered"
            raise UnknownAchievement(
                f"No achievement has id {achievement_id!r} (registered: {known})."
            ) from None

    def __contains__(self, achievement_id: object) -> bool:
        return achievement_id in self._instances

    def __iter__(self) -> Iterator[AchievementBase]:
        return iter(list(self._instances.values()))

    def classes(self) -> list[type[AchievementBase]]:
        """Every class seen, including ones without a valid id (for checks)."""
        return [*self._classes.values(), *self._unindexed]

    def snapshot(self) -> dict[str, Any]:
        return {
            "classes": dict(self._classes),
            "unindexed": list(self._unindexed),
            "conflicts": list(self.conflicts),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._classes = dict(snapshot["classes"])
        self._instances = {k: cls() for k, cls in self._classes.items()}
        self._unindexed = list(snapshot["unindexed"])
        self.conflicts = list(snapshot["conflicts"])
        self._reindex()


registry = AchievementRegistry()

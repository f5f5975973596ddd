"""The base class of achievements, as the original django-hero README shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from hero.registry import registry

if TYPE_CHECKING:
    from hero.models import AchievementUnlocked


class AchievementMeta(type):
    """Registers each achievement class defined in an ``achievements`` module."""

    def __init__(
        cls, name: str, bases: tuple[type, ...], attrs: dict[str, Any]
    ) -> None:
        super().__init__(name, bases, attrs)
        if attrs.get("abstract", False) or not bases:
            return
        module = attrs.get("__module__", "")
        if module == "achievements" or module.endswith(".achievements"):
            # Only AchievementBase and its subclasses have this metaclass, and
            # AchievementBase itself (no bases) returned above.
            registry.add(cast("type[AchievementBase]", cls), explicit=False)


class AchievementBase(metaclass=AchievementMeta):
    """Subclass this in an app's ``achievements.py`` to define an achievement.

    ``id`` and ``title`` are required, and so is :meth:`unlock`. Set
    ``abstract = True`` on a base class of your own to keep it unregistered.
    """

    abstract: ClassVar[bool] = True

    #: The unique identifier of the achievement. It should never change.
    id: ClassVar[str]
    #: Title for this achievement.
    title: ClassVar[str]
    description: ClassVar[str] = ""
    #: Listed, but title, description and image stay hidden until unlocked.
    secret: ClassVar[bool] = False
    #: Not listed at all until unlocked.
    invisible: ClassVar[bool] = False
    image_locked: ClassVar[str | None] = None
    image_unlocked: ClassVar[str | None] = None
    image_secret: ClassVar[str | None] = None
    #: Names of the events that can unlock this achievement.
    events: ClassVar[list[str]] = []
    #: Steps that complete it, for an achievement that reports progress with
    #: ``AchievementProgress(steps=k)``; None for one awarded by level.
    steps: ClassVar[int | None] = None
    #: Revoke it when ``unlock()`` no longer returns a level (the default keeps
    #: an achievement once unlocked).
    revoke_when_unmet: ClassVar[bool] = False
    #: Awarded once per key, as often as it happens (``unlock()`` answers
    #: ``AchievementUnlocked(level=N, key="answer:123")``), instead of held once.
    repeatable: ClassVar[bool] = False

    def unlock(self, **state: Any) -> AchievementUnlocked | None:
        """Return ``AchievementUnlocked(level=N)`` to award level N, or None
        (``AchievementUnlocked(level=N, key=...)`` for a repeatable achievement).

        ``state`` always has a ``"user"`` key, as well as whatever the caller of
        ``hero.achievements.unlock()`` passed.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must define unlock(self, **state)"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {getattr(self, 'id', '?')!r}>"

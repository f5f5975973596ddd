"""What a viewer may see of achievements: the secrecy rules, in one place.

Every page, JSON response and template tag of hero asks this module, so that the
rules cannot drift apart between them. They read only the read tables.

Whose achievements hero's pages show at all is decided here too: a user's own,
and another user's only when the site makes profiles public
(:func:`profile_found`).

The rules, for a *subject* (the user whose achievements are shown) and a
*viewer* (who is looking; the subject, another user, or an anonymous visitor):

- An achievement is **revealed** to the viewer when it is neither secret nor
  invisible, or when the viewer holds it. Only a revealed achievement shows its
  id, title, description, and locked or unlocked image.
- The subject's listing holds every achievement of the catalog that is not
  retired, except an invisible one the subject does not hold, or that is not
  revealed to the viewer: it is not listed at all.
- A secret achievement that is not revealed is listed as a placeholder: the
  secret image, no id, title or description (when the subject holds it, its
  level and date show).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import Max
from django.templatetags.static import static
from django.utils.translation import gettext, gettext_lazy

from hero.conf import DEFAULT_LEVELS, conf
from hero.models import (
    Achievement,
    AchievementCount,
    AchievementProgress,
    AchievementUnlocked,
    LedgerEntry,
    NoticeCursor,
)
from hero.queries import Rarity

State = Literal["unlocked", "locked", "secret"]

#: The title a template shows for a secret achievement that is not revealed.
SECRET_TITLE = gettext_lazy("Secret achievement")


def profile_found(by_pk: bool) -> bool:
    """Whether another user's achievements page and JSON may be found at all.

    Only when the site makes profiles public (``HERO_PUBLIC_PROFILES``), and by
    primary key only when it asks for that too (``HERO_PROFILES_BY_PK``):
    numbers can be counted through, and would list every account. A user's
    own page does not ask this.
    """
    return conf.HERO_PUBLIC_PROFILES and (not by_pk or conf.HERO_PROFILES_BY_PK)


def _db() -> str:
    return str(conf.HERO_DATABASE)


def level_names() -> dict[int, str]:
    """Level number to name, from ``ACHIEVEMENT_LEVELS``, in the active language
    when they are hero's default names (a site's own names are shown as given)."""
    levels = conf.ACHIEVEMENT_LEVELS
    name_of = gettext if levels == DEFAULT_LEVELS else str
    return {int(number): name_of(name) for number, name in levels}


def level_name(level: int | None) -> str | None:
    """The name of a level ("Gold"), "Level N" for one no longer configured."""
    if level is None:
        return None
    return level_names().get(level) or gettext("Level %(number)d") % {"number": level}


def image_url(path: str) -> str:
    """The URL of an image setting or override: a URL or absolute path is kept,
    anything else is a static file path."""
    if path.startswith(("http://", "https://", "//", "/")):
        return path
    return str(static(path))


def image_path(
    achievement: Achievement, kind: Literal["locked", "unlocked", "secret"]
) -> str:
    """The achievement's own image of that kind, or the default setting."""
    own = getattr(achievement, f"image_{kind}", "")
    if own:
        return str(own)
    default = {
        "locked": conf.ACHIEVEMENT_IMAGE_LOCKED,
        "unlocked": conf.ACHIEVEMENT_IMAGE_UNLOCKED,
        "secret": conf.ACHIEVEMENT_IMAGE_SECRET,
    }[kind]
    return str(default)


def held_levels(user: Any) -> dict[str, int]:
    """Achievement id to level, of everything ``user`` holds (none if anonymous)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    return dict(
        AchievementUnlocked.objects.using(_db())
        .filter(user_id=user.pk)
        .values_list("achievement_id", "level")
    )


def is_revealed(achievement: Achievement, viewer_holds: bool) -> bool:
    """Whether the viewer may see the achievement's title, description and images."""
    return viewer_holds or not (achievement.secret or achievement.invisible)


@dataclass(frozen=True)
class ProgressDisplay:
    """How far a user is toward an achievement that has steps, as a page shows it
    (read from the progress table; an unlock's result is :class:`hero.events.Progress`)."""

    steps: int
    total: int

    @property
    def percent(self) -> float:
        return min(100.0, 100.0 * self.steps / self.total) if self.total else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "total": self.total,
            "percent": round(self.percent, 1),
        }


@dataclass(frozen=True)
class Card:
    """One achievement as a viewer may see it in a user's listing.

    ``id``, ``title`` and ``description`` are None for a secret placeholder;
    ``level``, ``unlocked_at`` and ``times`` (how many awards, of a repeatable
    achievement) are set when the subject holds it.
    """

    state: State
    id: str | None
    title: str | None
    description: str | None
    image: str
    level: int | None = None
    unlocked_at: datetime | None = None
    progress: ProgressDisplay | None = None
    times: int | None = None

    @property
    def unlocked(self) -> bool:
        """The subject holds it (also true of a secret placeholder they hold)."""
        return self.level is not None

    @property
    def level_name(self) -> str | None:
        return level_name(self.level)

    @property
    def image_url(self) -> str:
        return image_url(self.image)

    @property
    def display_title(self) -> str:
        return self.title if self.title is not None else str(SECRET_TITLE)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "unlocked": self.unlocked,
            "title": self.title,
            "description": self.description,
            "image": self.image_url,
            "level": self.level,
            "level_name": self.level_name,
            "unlocked_at": self.unlocked_at,
            "times": self.times,
            "progress": self.progress.as_json() if self.progress else None,
        }


@dataclass(frozen=True)
class Listing:
    """A user's achievements as a viewer may see them."""

    cards: list[Card]

    @property
    def unlocked(self) -> int:
        """How many of the listed achievements the subject holds."""
        return sum(1 for card in self.cards if card.unlocked)

    @property
    def listed(self) -> int:
        return len(self.cards)

    @property
    def percent(self) -> float:
        return 100.0 * self.unlocked / self.listed if self.listed else 0.0


def _card(
    achievement: Achievement,
    holding: AchievementUnlocked | None,
    progress: AchievementProgress | None,
    revealed: bool,
) -> Card | None:
    level = holding.level if holding else None
    unlocked_at = holding.unlocked_at if holding else None
    times = holding.times if holding else None
    if not revealed:
        if achievement.invisible:
            return None
        return Card(
            "secret",
            None,
            None,
            None,
            image_path(achievement, "secret"),
            level,
            unlocked_at,
            times=times,
        )
    if holding is not None:
        return Card(
            "unlocked",
            achievement.id,
            achievement.title,
            achievement.description,
            image_path(achievement, "unlocked"),
            level,
            unlocked_at,
            times=times,
        )
    if achievement.invisible:
        return None  # revealed to the viewer, but the subject has not unlocked it
    return Card(
        "locked",
        achievement.id,
        achievement.title,
        achievement.description,
        image_path(achievement, "locked"),
        progress=_progress(achievement, progress),
    )


def _progress(
    achievement: Achievement, progress: AchievementProgress | None
) -> ProgressDisplay | None:
    if progress is not None:
        return ProgressDisplay(progress.steps, progress.total)
    if achievement.steps:
        return ProgressDisplay(0, achievement.steps)
    return None


def listing(subject: Any, viewer: Any) -> Listing:
    """The subject's achievements as ``viewer`` may see them.

    Unlocked ones come first (latest first), then locked ones, then secret
    placeholders, each group in catalog order. Four queries at most.
    """
    db = _db()
    holdings = {
        h.achievement_id: h
        for h in AchievementUnlocked.objects.using(db).filter(user_id=subject.pk)
    }
    progress = {
        p.achievement_id: p
        for p in AchievementProgress.objects.using(db).filter(user_id=subject.pk)
    }
    is_subject = viewer is not None and getattr(viewer, "pk", None) == subject.pk
    viewer_holds = set(holdings) if is_subject else set(held_levels(viewer))

    cards: list[Card] = []
    for achievement in Achievement.objects.using(db).listed():
        revealed = is_revealed(achievement, achievement.id in viewer_holds)
        card = _card(
            achievement,
            holdings.get(achievement.id),
            progress.get(achievement.id),
            revealed,
        )
        if card is not None:
            cards.append(card)
    unlocked = sorted(
        (c for c in cards if c.state == "unlocked"),
        key=lambda c: c.unlocked_at or datetime.min,
        reverse=True,
    )
    rest = [c for c in cards if c.state == "locked"] + [
        c for c in cards if c.state == "secret"
    ]
    return Listing(unlocked + rest)


@dataclass(frozen=True)
class Rung:
    """One level of an achievement's ladder."""

    level: int
    name: str
    holders: int  # users holding exactly this level
    rarity: Rarity  # users holding this level or above, of all users
    held: bool  # the viewer holds exactly this level

    def as_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "holders": self.holders,
            "holders_at_or_above": self.rarity.holders,
            "percent": round(self.rarity.percent, 1),
        }


@dataclass(frozen=True)
class Detail:
    """An achievement revealed to a viewer, with its level ladder."""

    achievement: Achievement
    level: int | None  # the viewer's
    unlocked_at: datetime | None
    progress: ProgressDisplay | None
    ladder: list[Rung]
    users: int
    times: int | None = None  # the viewer's awards (repeatable achievements)

    @property
    def unlocked(self) -> bool:
        return self.level is not None

    @property
    def level_name(self) -> str | None:
        return level_name(self.level)

    @property
    def image_url(self) -> str:
        kind: Literal["unlocked", "locked"] = "unlocked" if self.unlocked else "locked"
        return image_url(image_path(self.achievement, kind))

    @property
    def holders(self) -> int:
        return sum(rung.holders for rung in self.ladder)

    def as_json(self) -> dict[str, Any]:
        a = self.achievement
        return {
            "id": a.id,
            "title": a.title,
            "description": a.description,
            "secret": a.secret,
            "retired": a.retired,
            "image": self.image_url,
            "unlocked": self.unlocked,
            "level": self.level,
            "level_name": self.level_name,
            "unlocked_at": self.unlocked_at,
            "times": self.times,
            "progress": self.progress.as_json() if self.progress else None,
            "holders": self.holders,
            "users": self.users,
            "levels": [rung.as_json() for rung in self.ladder],
        }


def detail(achievement_id: str, viewer: Any) -> Detail | None:
    """The achievement as ``viewer`` may see it, or None when it is unknown or
    not revealed to them (a secret or invisible one they have not unlocked)."""
    db = _db()
    achievement = _achievement(achievement_id)
    if achievement is None:
        return None
    holding = None
    progress = None
    if viewer is not None and getattr(viewer, "is_authenticated", False):
        holding = (
            AchievementUnlocked.objects.using(db)
            .filter(user_id=viewer.pk, achievement_id=achievement.id)
            .first()
        )
        if holding is None and not achievement.retired:
            row = (
                AchievementProgress.objects.using(db)
                .filter(user_id=viewer.pk, achievement_id=achievement.id)
                .first()
            )
            progress = _progress(achievement, row)
    if not is_revealed(achievement, holding is not None):
        return None
    counts = {
        level: n
        for (_, level), n in AchievementCount.objects.using(db)
        .holders([achievement.id])
        .items()
    }
    users = get_user_model()._default_manager.db_manager(db).count()
    names = level_names()
    levels = sorted(set(names) | {level for level, n in counts.items() if n})
    ladder = [
        Rung(
            level=level,
            name=level_name(level) or "",
            holders=counts.get(level, 0),
            rarity=Rarity(
                achievement.id,
                level,
                sum(n for lvl, n in counts.items() if lvl >= level),
                users,
            ),
            held=holding is not None and holding.level == level,
        )
        for level in levels
    ]
    return Detail(
        achievement,
        holding.level if holding else None,
        holding.unlocked_at if holding else None,
        progress,
        ladder,
        users,
        holding.times if holding else None,
    )


def image_for(achievement_id: str | Achievement, subject: Any, viewer: Any) -> str:
    """URL of the image to show for the subject's standing with an achievement:
    unlocked, locked or secret; ``""`` for one the viewer may not know of."""
    achievement = _achievement(achievement_id)
    if achievement is None:
        return ""
    subject_levels = held_levels(subject)
    viewer_levels = subject_levels if _same(subject, viewer) else held_levels(viewer)
    card = _card(
        achievement,
        _holding(subject_levels, achievement.id),
        None,
        is_revealed(achievement, achievement.id in viewer_levels),
    )
    return card.image_url if card else ""


def progress_for(
    achievement_id: str | Achievement, subject: Any, viewer: Any
) -> ProgressDisplay | None:
    """The subject's progress toward an achievement they have not unlocked yet,
    or None (no steps, already unlocked, or not revealed to the viewer)."""
    achievement = _achievement(achievement_id)
    if achievement is None or not getattr(subject, "is_authenticated", False):
        return None
    db = _db()
    if (
        AchievementUnlocked.objects.using(db)
        .filter(user_id=subject.pk, achievement_id=achievement.id)
        .exists()
    ):
        return None
    viewer_holds = (
        achievement.id in held_levels(viewer) if not _same(subject, viewer) else False
    )
    if achievement.invisible or not is_revealed(achievement, viewer_holds):
        return None
    row = (
        AchievementProgress.objects.using(db)
        .filter(user_id=subject.pk, achievement_id=achievement.id)
        .first()
    )
    return _progress(achievement, row)


def _achievement(value: str | Achievement) -> Achievement | None:
    if isinstance(value, Achievement):
        return value
    achievement_id = str(value)
    if "\x00" in achievement_id:
        return None  # no such id, and PostgreSQL refuses NUL in text
    found: Achievement | None = (
        Achievement.objects.using(_db()).filter(pk=achievement_id).first()
    )
    return found


def _same(subject: Any, viewer: Any) -> bool:
    return viewer is None or getattr(viewer, "pk", None) == getattr(subject, "pk", None)


class _Held:
    """Stands in for a holding when only the level is known."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.times = 1
        self.unlocked_at = None


def _holding(levels: dict[str, int], achievement_id: str) -> Any:
    level = levels.get(achievement_id)
    return _Held(level) if level is not None else None


# Notices of new unlocks ------------------------------------------------------

NOTICE_KINDS = (
    LedgerEntry.Kind.UNLOCKED,
    LedgerEntry.Kind.UPGRADED,
    LedgerEntry.Kind.GRANTED,
    LedgerEntry.Kind.REPEATED,
)


@dataclass(frozen=True)
class Notice:
    """An unlock or upgrade the user has not marked as seen (``granted`` when it
    was granted by hand)."""

    position: int
    achievement_id: str
    title: str
    description: str
    image: str
    level: int | None
    upgraded: bool
    occurred_at: datetime
    granted: bool = False

    @property
    def level_name(self) -> str | None:
        return level_name(self.level)

    @property
    def image_url(self) -> str:
        return image_url(self.image)

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "id": self.achievement_id,
            "title": self.title,
            "description": self.description,
            "image": self.image_url,
            "level": self.level,
            "level_name": self.level_name,
            "upgraded": self.upgraded,
            "granted": self.granted,
            "occurred_at": self.occurred_at,
        }


def seen_position(user: Any) -> int:
    row = NoticeCursor.objects.using(_db()).filter(user_id=user.pk).first()
    return row.seen_position if row else 0


def notices(user: Any, limit: int = 5) -> list[Notice]:
    """The user's unseen unlocks, upgrades and grants, latest first, one per
    achievement, of achievements they still hold (a revoked one is no news)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    db = _db()
    entries = (
        LedgerEntry.objects.using(db)
        .filter(
            user_id=user.pk, kind__in=NOTICE_KINDS, position__gt=seen_position(user)
        )
        .select_related("achievement")
        .order_by("-position")
    )
    held = held_levels(user)
    found: list[Notice] = []
    seen_ids: set[str] = set()
    for entry in entries.iterator():
        achievement = entry.achievement
        if achievement is None or entry.achievement_id in seen_ids:
            continue
        seen_ids.add(achievement.id)
        if achievement.id not in held:
            continue
        found.append(
            Notice(
                position=entry.position,
                achievement_id=achievement.id,
                title=achievement.title,
                description=achievement.description,
                image=image_path(achievement, "unlocked"),
                level=entry.level,
                upgraded=entry.previous_level is not None,
                occurred_at=entry.occurred_at,
                granted=entry.kind == LedgerEntry.Kind.GRANTED,
            )
        )
        if len(found) == limit:
            break
    return found


def latest_position(user: Any) -> int:
    """The position of the user's latest ledger entry (0 if none)."""
    value = (
        LedgerEntry.objects.using(_db())
        .filter(user_id=user.pk)
        .aggregate(latest=Max("position"))["latest"]
    )
    return int(value or 0)


def mark_notices_seen(user: Any, upto: int | None = None) -> int:
    """Mark the user's notices up to store position ``upto`` (default: all) as
    seen, and return the position now seen up to.

    Two single statements, each atomic, so that concurrent requests never lose
    a mark, and the position never moves backwards.
    """
    latest = latest_position(user)
    target = latest if upto is None else max(0, min(int(upto), latest))
    cursors = NoticeCursor.objects.using(_db())
    cursors.bulk_create(
        [NoticeCursor(user_id=user.pk, seen_position=0)], ignore_conflicts=True
    )
    cursors.filter(user_id=user.pk, seen_position__lt=target).update(
        seen_position=target
    )
    return seen_position(user)

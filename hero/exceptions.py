"""hero's named errors. Each message says what was wrong and how to fix it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from eventsourcing.persistence import OperationalError


class HeroError(Exception):
    """Base class of hero's errors."""


class InvalidEventName(HeroError, TypeError):
    """unlock() was given an event name that is not a non-empty string."""


class InvalidUser(HeroError, ValueError):
    """unlock() was given no user, an anonymous user or an unsaved one."""


class InvalidLevel(HeroError, ValueError):
    """An achievement reported a level that is not in ACHIEVEMENT_LEVELS."""


class InvalidUnlockResult(HeroError, TypeError):
    """An achievement's unlock() returned something other than a result or None."""


class InvalidState(HeroError, ValueError):
    """The state passed to unlock() cannot be recorded (for example, too large)."""


class InvalidRevocation(HeroError, ValueError):
    """revoke() was given no reason, or a reason or actor it cannot record."""


class InvalidMoment(HeroError, TypeError):
    """levels() was given a moment that is not a datetime."""


class InvalidBackfill(HeroError, ValueError):
    """A backfill was given a batch size out of range, or an achievement's
    backfill() yielded something that is not an award."""


class NotHeldError(HeroError, LookupError):
    """The user does not hold the achievement that was to be revoked (raised by
    the user's aggregate, so by revoke() and the ledger alike)."""


class AlreadyHeldError(HeroError, ValueError):
    """The user already holds the achievement at the level to be granted, or
    higher (raised by the user's aggregate, so by grant() and the ledger alike)."""


class InvalidGrant(HeroError, ValueError):
    """grant() was called without a reason, or with an actor it cannot record."""


class UnknownAchievement(HeroError, LookupError):
    """No achievement with the given id is registered."""


class DuplicateAchievement(HeroError, ImproperlyConfigured):
    """Two different classes claim the same achievement id."""


class NothingToBackfill(HeroError):
    """A backfill has no source: the achievement defines no backfill() and the
    trigger log is empty."""


class UnlockConflict(HeroError):
    """Concurrent writers kept changing the same achievement; retries ran out."""


class StoreBusy(HeroError, OperationalError):
    """The store's ordering lock was not free within ``HERO_LOCK_TIMEOUT``."""


class ChainBroken(HeroError):
    """The store's chain does not verify, so it cannot be linked again."""

"""hero's settings, with their defaults.

Every setting hero reads goes through :data:`conf`. Values are remembered until
Django reports a change (``setting_changed``, sent by ``override_settings``), so
the unlock path does not pay for looking up unset settings on every call.
Nothing else in hero imports ``django.conf.settings`` for hero's own settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload
from weakref import WeakSet

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.signals import setting_changed

T = TypeVar("T")


class cached(Generic[T]):
    """A setting read once and then kept as an attribute of the reader until a
    setting changes: a later read is an attribute lookup, not a call (the call
    that awards nothing reads two settings)."""

    def __init__(self, read: Callable[[Any], T]) -> None:
        self.read = read
        self.name = read.__name__
        self.__doc__ = read.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> cached[T]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> T: ...
    def __get__(self, instance: object, owner: type[Any]) -> T | cached[T]:
        if instance is None:
            return self
        # No __set__: the value stored in the instance's __dict__ is found
        # before this descriptor from now on, until _forget() removes it.
        value = instance.__dict__[self.name] = self.read(instance)
        return value


#: Every reader, for _forget() to clear what they kept.
_readers: WeakSet[Any] = WeakSet()


def _forget(**kwargs: Any) -> None:
    for reader in list(_readers):
        reader.__dict__.clear()


setting_changed.connect(_forget)


def gettext_noop(message: str) -> str:
    """Mark a message for ``makemessages`` without translating it. Django's own
    reads the settings, which may not be configured when hero is imported, so
    this is a copy, as in ``django.conf.global_settings``."""
    return message


#: hero's levels. Their names are translated where they are shown (marked here
#: so that ``makemessages`` finds them); names a site sets are its own.
DEFAULT_LEVELS: tuple[tuple[int, str], ...] = (
    (1, gettext_noop("Bronze")),
    (2, gettext_noop("Silver")),
    (3, gettext_noop("Gold")),
    (4, gettext_noop("Diamond")),
)


class Settings:
    """Typed access to hero's settings, each with its documented default."""

    def __init__(self) -> None:
        _readers.add(self)

    @cached
    def user_model(self) -> Any:
        """The user model (``AUTH_USER_MODEL``): Django's lookup costs more than
        the rest of a call that awards nothing, so it is made once per setting."""
        return get_user_model()

    @cached
    def HERO_DATABASE(self) -> str:
        """Alias of the database that holds the event store and the read tables."""
        return str(getattr(settings, "HERO_DATABASE", "default"))

    @cached
    def HERO_SUBSCRIPTION_POLL_INTERVAL(self) -> float:
        """Seconds a subscription waits before asking the store for new events."""
        return float(getattr(settings, "HERO_SUBSCRIPTION_POLL_INTERVAL", 0.1))

    @cached
    def HERO_RECORD_TRIGGERS(self) -> bool:
        """Record every unlock call, even one that awards nothing."""
        return bool(getattr(settings, "HERO_RECORD_TRIGGERS", False))

    @cached
    def HERO_MAX_STATE_BYTES(self) -> int:
        """Largest state, as JSON, that one unlock call may record."""
        return int(getattr(settings, "HERO_MAX_STATE_BYTES", 65536))

    @cached
    def HERO_UNLOCK_ATTEMPTS(self) -> int:
        """How often unlock decides again after losing a race to another writer."""
        return int(getattr(settings, "HERO_UNLOCK_ATTEMPTS", 10))

    @cached
    def HERO_LOCK_TIMEOUT(self) -> float:
        """Seconds a write waits for the store's ordering lock before giving up
        with :class:`~hero.exceptions.StoreBusy` (PostgreSQL; 0 waits for ever)."""
        return float(getattr(settings, "HERO_LOCK_TIMEOUT", 30.0))

    @cached
    def HERO_STORE_OPTIONS(self) -> dict[str, str]:
        """eventsourcing's options for hero's ledger (``MAPPER_TOPIC``,
        ``CIPHER_TOPIC``, ``COMPRESSOR_TOPIC``, ...). The process environment,
        where eventsourcing looks by default, is never read."""
        options = getattr(settings, "HERO_STORE_OPTIONS", None) or {}
        return {str(key): str(value) for key, value in dict(options).items()}

    @cached
    def HERO_CHAIN_KEY(self) -> str | None:
        """The secret that keys the store's chain; None: derived from SECRET_KEY."""
        value = getattr(settings, "HERO_CHAIN_KEY", None)
        return None if value is None else str(value)

    @cached
    def HERO_CHAIN_KEY_FALLBACKS(self) -> list[str]:
        """Old chain keys that still verify what they linked (with HERO_CHAIN_KEY)."""
        return [str(key) for key in getattr(settings, "HERO_CHAIN_KEY_FALLBACKS", ())]

    @cached
    def chain_key_sources(self) -> tuple[str, ...]:
        """The secrets the chain keys derive from, the current one first:
        ``HERO_CHAIN_KEY`` and its fallbacks when it is set, else
        ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` (see
        :func:`hero.store.chain.chain_keys`)."""
        if self.HERO_CHAIN_KEY is not None:
            return (self.HERO_CHAIN_KEY, *self.HERO_CHAIN_KEY_FALLBACKS)
        return (
            settings.SECRET_KEY,
            *getattr(settings, "SECRET_KEY_FALLBACKS", ()),
        )

    @cached
    def HERO_PROJECTIONS(self) -> str:
        """``"inline"``: read tables change in the unlock's transaction;
        ``"async"``: a ``hero_project`` worker updates them."""
        return str(getattr(settings, "HERO_PROJECTIONS", "inline"))

    @cached
    def HERO_NOTIFY(self) -> bool | None:
        """PostgreSQL: whether writers announce their events (``NOTIFY``), so
        that followers of the store wake at once instead of at their next
        poll; None (unset) leaves it to :attr:`announces`. Only ``True`` or
        ``False`` otherwise (check hero.E016 reports any other value, which
        reads as unset)."""
        value = getattr(settings, "HERO_NOTIFY", None)
        return value if isinstance(value, bool) else None

    @cached
    def announces(self) -> bool:
        """Whether writers on PostgreSQL send ``NOTIFY``: as ``HERO_NOTIFY``
        says, and when it is unset only with ``HERO_PROJECTIONS = "async"``,
        whose ``hero_project`` workers wait for it. PostgreSQL makes the
        commits of every transaction that notifies take turns, server-wide,
        so a site whose read tables change in the unlock's transaction does
        not pay for announcements nothing of hero's needs."""
        if self.HERO_NOTIFY is not None:
            return self.HERO_NOTIFY
        return self.HERO_PROJECTIONS == "async"

    @cached
    def workers_link(self) -> bool:
        """PostgreSQL: whether the events writers commit are left for
        ``hero_project`` to link (with ``HERO_PROJECTIONS = "async"``, whose
        workers follow the store anyway, within half a second, many events in
        one transaction) rather than linked by the writers: in the caller's
        transaction right after the caller's commit, two more exchanges with
        the server in the caller's request; in a transaction of hero's own,
        the events before its own on the way, a function of the server's and
        an update more in each award."""
        return self.HERO_PROJECTIONS == "async"

    @cached
    def HERO_PUBLIC_PROFILES(self) -> bool:
        """Let anyone see a user's achievements page and JSON, found by username.
        Off by default: a user's achievements are theirs alone to see. Only
        ``True`` switches it on (check hero.E013 reports any other value)."""
        return getattr(settings, "HERO_PUBLIC_PROFILES", False) is True

    @cached
    def HERO_PROFILES_BY_PK(self) -> bool:
        """With public profiles, find them by primary key too. Off by default:
        pks can be counted through, which lists every account of the site."""
        return getattr(settings, "HERO_PROFILES_BY_PK", False) is True

    def as_set(self, name: str) -> Any:
        """A setting as the site wrote it, or None when it is not set: what the
        system checks judge (the properties apply defaults and types)."""
        return getattr(settings, name, None)

    @cached
    def ACHIEVEMENT_LEVELS(self) -> Any:
        """The levels an achievement can be unlocked at: ``((number, name), ...)``."""
        return getattr(settings, "ACHIEVEMENT_LEVELS", DEFAULT_LEVELS)

    @cached
    def ACHIEVEMENT_IMAGE_LOCKED(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_LOCKED",
            "achievements/images/default-locked.jpg",
        )

    @cached
    def ACHIEVEMENT_IMAGE_UNLOCKED(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_UNLOCKED",
            "achievements/images/default-unlocked.jpg",
        )

    @cached
    def ACHIEVEMENT_IMAGE_SECRET(self) -> Any:
        return getattr(
            settings,
            "ACHIEVEMENT_IMAGE_SECRET",
            "achievements/images/default-secret.jpg",
        )


conf = Settings()

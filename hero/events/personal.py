"""Personal fields: what a site passes about a user, which forgetting erases.

An event class lists them in ``PERSONAL``. The store keeps them sealed in one
``sealed`` member (see :mod:`hero.sealing`); an event read back has them opened
the first time one is read, by the opener the sealing module registers. Nothing
here touches a database: the domain only says which fields are personal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

#: What a personal field reads as once its user was forgotten.
FORGOTTEN_VALUES: dict[str, Any] = {
    "state": {},
    "key": None,
    "reason": "",
    "actor": None,
}

_opener: Callable[[Any], dict[str, Any]] | None = None


def set_opener(opener: Callable[[Any], dict[str, Any]]) -> None:
    """Register the function that opens an event's sealed personal fields."""
    global _opener
    _opener = opener


def personal_fields(cls: type) -> tuple[str, ...]:
    """The personal fields of an event class (none for most)."""
    return getattr(cls, "PERSONAL", ())


class HasPersonalFields:
    """Mixed into event classes with personal fields: an event read back from
    the store opens them when one is first read (most readers, such as an
    aggregate deciding an award, never do, and pay nothing)."""

    PERSONAL: ClassVar[tuple[str, ...]] = ()

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not found: a sealed field not yet opened.
        if name in type(self).PERSONAL:
            state = self.__dict__
            if state.get("sealed") is not None and _opener is not None:
                state.update(_opener(self))
                return state[name]
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}"
        )

"""The event store's factory under its earlier name.

``PERSISTENCE_MODULE="hero.persistence"`` keeps working; the store itself is the
:mod:`hero.store` package.
"""

from __future__ import annotations

from hero.store.factory import DjangoFactory, Factory

__all__ = ["DjangoFactory", "Factory"]

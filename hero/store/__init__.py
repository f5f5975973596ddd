"""The event store: eventsourcing's recorders on Django's own database connection.

Select it the library's way, with ``PERSISTENCE_MODULE="hero.store"`` in an
application's environment. Each module owns one thing:

- :mod:`~hero.store.transactions`: transactions that join the caller's, and the
  translation of Django's database errors into eventsourcing's;
- :mod:`~hero.store.recorders`: the recorders and the subscription to the log;
- :mod:`~hero.store.ordering`: the ordering lock, so that positions are committed
  in order;
- :mod:`~hero.store.chain`: the hash chain over the stored events;
- :mod:`~hero.store.positions`: how far each follower has applied the store;
- :mod:`~hero.store.sqlite` and :mod:`~hero.store.postgres`: each backend's
  fast path (a leaner cursor, pipelines);
- :mod:`~hero.store.status`: reports about the store as a whole;
- :mod:`~hero.store.factory`: the factory eventsourcing asks for recorders.
"""

from __future__ import annotations

from hero.store.chain import ChainCheck, verify_chain
from hero.store.factory import DjangoFactory, Factory
from hero.store.status import StoreStatus, store_status

__all__ = [
    "ChainCheck",
    "DjangoFactory",
    "Factory",
    "StoreStatus",
    "store_status",
    "verify_chain",
]

"""The read models hero keeps, and keeping them in the transaction of the events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from eventsourcing.persistence import Recording

from hero.conf import conf
from hero.projections.base import Change, ReadModel, apply_read_models
from hero.projections.holdings import Holdings
from hero.projections.ledger import LedgerEntries
from hero.store.positions import keep_current
from hero.store.transactions import DjangoDatastore
from hero.users import user_pk_adapter

READ_MODELS: dict[str, type[ReadModel]] = {
    Holdings.name: Holdings,
    LedgerEntries.name: LedgerEntries,
}


def read_models(alias: str, names: Iterable[str] | None = None) -> list[ReadModel]:
    """The read models on database ``alias`` (all, or the ones named)."""
    selected = list(names) if names else list(READ_MODELS)
    unknown = [n for n in selected if n not in READ_MODELS]
    if unknown:
        raise ValueError(
            f"Unknown projection {', '.join(map(repr, unknown))}; "
            f"hero's projections are {', '.join(READ_MODELS)}."
        )
    datastore = DjangoDatastore(alias)
    return [READ_MODELS[name](datastore) for name in selected]


_inline_models: dict[str, list[ReadModel]] = {}

# Registered before any write, so that every writer of events knows whether it
# keeps them current (hero.store.ordering.hold_ordering_lock).
keep_current(list(READ_MODELS), lambda: conf.HERO_PROJECTIONS == "inline")


def project_inline(recordings: Sequence[Recording[UUID]]) -> None:
    """Save listener: update the read tables in the transaction of the events,
    when ``HERO_PROJECTIONS`` is ``"inline"`` (the default). Otherwise note that
    the read models have not applied these events (they may have been current)."""
    if not recordings:
        return
    alias = conf.HERO_DATABASE
    models = _inline_models.get(alias)
    if models is None:
        models = _inline_models[alias] = read_models(alias)
        keep_current([model.name for model in models])
    if conf.HERO_PROJECTIONS != "inline":
        models[0].positions.mark_behind(
            [model.name for model in models],
            min(r.notification.id for r in recordings) - 1,
        )
        return
    changes = [Change(r.notification.id, r.domain_event) for r in recordings]
    apply_read_models(models, changes, users_exist=True, recorded=True)


def forget_inline(user_pk: str, recordings: Sequence[Recording[UUID]]) -> None:
    """Forget listener: the read tables exact at once for a forgotten user, in
    the transaction of the forgetting, whatever ``HERO_PROJECTIONS`` says.

    The ``Forgotten`` events are applied now (with any events before them that
    a worker had not applied yet, so that the order holds); the ledger keeps
    its entries, that awards happened, with their payloads emptied (those of
    events stored before sealing held plain values); the notice cursor goes.
    """
    alias = conf.HERO_DATABASE
    models = _inline_models.get(alias)
    if models is None:
        models = _inline_models[alias] = read_models(alias)
        keep_current([model.name for model in models])
    if recordings and conf.HERO_PROJECTIONS != "inline":
        # Inline, project_inline() applied them as they were saved.
        changes = [Change(r.notification.id, r.domain_event) for r in recordings]
        apply_read_models(models, changes, users_exist=True, recorded=True)
    datastore = DjangoDatastore(alias)
    with datastore.transaction() as cursor:
        pk = user_pk_adapter(cursor.db)(user_pk)
        cursor.execute(
            "UPDATE hero_ledger_entry SET payload = '' "
            "WHERE user_id = %s AND payload <> ''",
            [pk],
        )
        cursor.execute("DELETE FROM hero_notice_cursor WHERE user_id = %s", [pk])

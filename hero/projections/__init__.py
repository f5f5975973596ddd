"""Everything that turns events into the tables views and queries read.

``holdings`` keeps :class:`~hero.models.AchievementUnlocked` and
:class:`~hero.models.AchievementCount`; ``ledger`` keeps
:class:`~hero.models.LedgerEntry`. The catalog (:class:`~hero.models.Achievement`)
follows the registered classes instead (:mod:`hero.projections.catalog`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from eventsourcing.persistence import Recording

from hero.conf import conf
from hero.persistence import DjangoDatastore
from hero.projections.base import (
    CURRENT,
    Change,
    View,
    ViewProjection,
    apply_views,
    mark_behind,
)
from hero.projections.holdings import HoldingsView
from hero.projections.ledger import LedgerView

VIEW_CLASSES: dict[str, type[View]] = {
    HoldingsView.name: HoldingsView,
    LedgerView.name: LedgerView,
}


def views(alias: str, names: Iterable[str] | None = None) -> list[View]:
    """The views on database ``alias`` (all, or the ones named)."""
    selected = list(names) if names else list(VIEW_CLASSES)
    unknown = [n for n in selected if n not in VIEW_CLASSES]
    if unknown:
        raise ValueError(
            f"Unknown projection {', '.join(map(repr, unknown))}; "
            f"hero's projections are {', '.join(VIEW_CLASSES)}."
        )
    datastore = DjangoDatastore(alias)
    return [VIEW_CLASSES[name](datastore) for name in selected]


_inline_views: dict[str, list[View]] = {}


def project_inline(recordings: Sequence[Recording[UUID]]) -> None:
    """Save listener: update the read tables in the transaction of the events,
    when ``HERO_PROJECTIONS`` is ``"inline"`` (the default). Otherwise note that
    the views have not applied these events (they may have been current)."""
    if not recordings:
        return
    alias = conf.HERO_DATABASE
    if alias not in _inline_views:
        _inline_views[alias] = views(alias)
    if conf.HERO_PROJECTIONS != "inline":
        mark_behind(
            _inline_views[alias], min(r.notification.id for r in recordings) - 1
        )
        return
    changes = [Change(r.notification.id, r.domain_event) for r in recordings]
    apply_views(_inline_views[alias], changes, users_exist=True, recorded=True)


__all__ = [
    "CURRENT",
    "VIEW_CLASSES",
    "Change",
    "View",
    "ViewProjection",
    "project_inline",
    "views",
]

"""Everything that turns events into the tables pages and queries read.

- :mod:`~hero.projections.base`: :class:`ReadModel`, applying events with positions;
- :mod:`~hero.projections.holdings`: :class:`~hero.models.AchievementUnlocked`,
  :class:`~hero.models.AchievementCount` and progress;
- :mod:`~hero.projections.ledger`: :class:`~hero.models.LedgerEntry`;
- :mod:`~hero.projections.rebuild` and :mod:`~hero.projections.verify`: the
  read models rebuilt from, and compared with, the whole store;
- :mod:`~hero.projections.worker`: following the store (``hero_project``);
- :mod:`~hero.projections.inline`: the read models hero keeps, and the save
  listener that the app config plugs into the ledger to keep them inline.
"""

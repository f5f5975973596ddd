"""Signals hero sends after the transaction that recorded a change commits.

Arguments: ``sender`` (the achievement class), ``user``, ``achievement`` (the
achievement instance), ``level`` and ``previous_level`` (None for a first unlock).
A change that is rolled back sends nothing.
"""

from __future__ import annotations

from django.dispatch import Signal

achievement_unlocked = Signal()
achievement_upgraded = Signal()
#: Arguments: sender, user, achievement, level (the one taken away), reason, actor.
achievement_revoked = Signal()
#: Arguments: sender, user, achievement, steps, previous_steps, total.
achievement_progressed = Signal()

"""The achievement logic both libraries run in the unlock benchmark.

A "points" achievement with four levels, unlocked by the ``points`` passed with
the event: 10 or more is level 1 (Bronze), 100 Silver, 1000 Gold, 10000 Diamond;
below 10 it awards nothing.
"""

from __future__ import annotations

EVENT = "points_awarded"

#: (minimum points, level number, level name), highest first.
THRESHOLDS: tuple[tuple[int, int, str], ...] = (
    (10_000, 4, "Diamond"),
    (1_000, 3, "Gold"),
    (100, 2, "Silver"),
    (10, 1, "Bronze"),
)

LEVEL_NAMES: tuple[str, ...] = tuple(name for _, _, name in reversed(THRESHOLDS))


def points_level(points: int) -> int | None:
    """The level ``points`` earns, or None below the first threshold."""
    for minimum, level, _ in THRESHOLDS:
        if points >= minimum:
            return level
    return None

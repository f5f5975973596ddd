"""How hero's long-running commands report their progress to the operator."""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm


class ProgressReporter:
    """A progress bar in a terminal (tqdm), plain lines otherwise."""

    def __init__(
        self,
        stdout: Any,
        *,
        interactive: bool,
        every: float = 5.0,
        label: str = "Rebuilding",
        unit: str = "event",
    ) -> None:
        self.stdout = stdout
        self.label = label
        self.unit = unit
        self.interactive = interactive
        self.every = every
        self.bar: Any = None
        self.total: int | None = 0
        self.done = 0
        self.started = self.last = time.monotonic()

    def start(self, total: int | None, done: int) -> None:
        """Begin; ``total`` is None when it is not known ahead (a count only)."""
        self.total, self.done = total, done
        if self.interactive:
            self.bar = tqdm(total=total, initial=done, unit=self.unit, unit_scale=True)
        else:
            if total is not None:
                self.stdout.write(
                    f"{self.label}: {done} of {total} {self.unit}s already done."
                )

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            if self.total is None:
                self.stdout.write(
                    f"  {self.done} {self.unit}s, {rate:,.0f} {self.unit}s/s"
                )
                return
            left = max(self.total - self.done, 0) / rate if rate else 0
            self.stdout.write(
                f"  {self.done} of {self.total} {self.unit}s, {rate:,.0f} {self.unit}s/s, "
                f"about {left:.0f}s left"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""A ``hero_project`` worker in a process of its own, for the benchmarks that run
with ``HERO_PROJECTIONS = "async"``, and how far behind the store it is."""

from __future__ import annotations

import io
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import _harness

#: The settings of every process of a run with asynchronous projections.
ASYNC = {"HERO_PROJECTIONS": "async"}


def projector_main(database: dict[str, Any], name: str) -> None:
    """``manage.py hero_project`` on the run's database, until SIGTERM."""
    _harness.setup_django(database, name, **ASYNC)
    from django.core.management import call_command

    call_command("hero_project", stdout=io.StringIO())


@contextmanager
def running(database: dict[str, Any], name: str) -> Iterator[None]:
    """A ``hero_project`` process while the block runs, stopped as an operator
    would (SIGTERM) at its end."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=projector_main, args=(database, name), name="hero-project"
    )
    process.start()
    try:
        yield
    finally:
        process.terminate()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def behind() -> dict[str, int]:
    """Events each read model has yet to project, by its name (none: caught up)."""
    from hero.conf import conf
    from hero.ledger import get_ledger
    from hero.projections.inline import read_models
    from hero.store.positions import UPSTREAM

    last = get_ledger().recorder.max_notification_id() or 0
    positions = {
        model.name: model.max_tracking_id(UPSTREAM) or 0
        for model in read_models(conf.HERO_DATABASE)
    }
    return {name: last - at for name, at in positions.items() if at < last}


def wait_caught_up(timeout: float = 120.0) -> dict[str, int]:
    """Wait until every read model has projected the whole store (or
    ``timeout`` seconds); what is still behind."""
    deadline = time.monotonic() + timeout
    while (left := behind()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left

"""Following the store: run read models' projections until told to stop.

``hero_project`` parses its arguments and calls :func:`run_projections`, which
owns the runner (eventsourcing's ``ProjectionRunner``: one thread, which
applies each run of events to every read model named in one transaction), the
signal handlers that stop it and the clean-up of its connections. On
PostgreSQL it also links the chain of the events committed since its last
look (:func:`hero.store.chain.link_committed`), which writers leave to it
with ``HERO_PROJECTIONS = "async"``.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from django.db import connections
from django.db import utils as db_utils
from eventsourcing.persistence import Tracking
from eventsourcing.projection import (
    ApplicationSubscription,
    EventSourcedProjection,
    Projection,
    ProjectionRunner,
)
from eventsourcing.utils import Environment, EnvType

from hero.exceptions import HeroError
from hero.ledger import Ledger
from hero.projections.base import ReadModel, ReadModelProjection, ReadModels
from hero.projections.inline import READ_MODELS
from hero.store.chain import link_committed
from hero.store.recorders import PollingSubscription

logger = logging.getLogger("hero.projections")

#: Seconds between the worker's looks at its runners, and at the chain.
LOOK_INTERVAL = 0.5


class NotCaughtUp(HeroError, TimeoutError):
    """``once`` mode ran out of time before reaching the store's last position."""


def run_projections(
    alias: str,
    names: Sequence[str],
    *,
    once: bool = False,
    timeout: float = 600.0,
    on_start: Callable[[], None] = lambda: None,
) -> None:
    """Run the named projections on database ``alias``: until SIGTERM or SIGINT
    (or ``stop`` from another thread), or with ``once`` until they have caught
    up with the store as it is now (:class:`NotCaughtUp` after ``timeout``
    seconds)."""
    env = {"PERSISTENCE_MODULE": "hero.store", "DJANGO_DATABASE": alias}
    # One runner for all of them: one subscription, one transaction a run.
    runners = [
        _Runner(
            application_class=_ledger_class(alias),
            projection_class=_projection_class(names),
            view_class=_read_models_class([READ_MODELS[name] for name in names]),
            env=env,
        )
    ]
    with _stopped_by_signals() as stop:
        on_start()
        with _cleaned_up(runners):
            _follow(runners, alias, stop, once=once, timeout=timeout)


def _follow(
    runners: Sequence[ProjectionRunner[Any, Any]],
    alias: str,
    stop: threading.Event,
    *,
    once: bool,
    timeout: float,
) -> None:
    if once:
        target = runners[0].app.recorder.max_notification_id()
        for runner in runners:
            try:
                runner.wait(target, timeout=timeout)
            except TimeoutError:
                raise NotCaughtUp(_not_caught_up(alias, target, timeout)) from None
        _link(alias, stop)
        return
    while not stop.wait(LOOK_INTERVAL):
        for runner in runners:
            runner.run_forever(timeout=0)  # re-raises a runner's error
        _link(alias, stop)


def _link(alias: str, stop: threading.Event) -> None:
    """Link the events committed and not linked yet (PostgreSQL; elsewhere
    they are linked as they are written), a batch at a time until none is
    left or the worker is told to stop, unless another process is linking
    (it or the next look links them), or this thread's connection is in a
    transaction of its caller's (links written in it would hold their rows
    until that transaction ends). A database error is logged, not raised:
    the next look tries again."""
    connection = connections[alias]
    if connection.in_atomic_block:
        return
    try:
        link_committed(alias, wait=False, until=stop.is_set)
    except db_utils.Error:
        logger.warning(
            "Database %r: linking the chain failed; the next look tries again.",
            alias,
            exc_info=True,
        )
        connection.close_if_unusable_or_obsolete()


class _Runner(ProjectionRunner[Any, Any]):
    """eventsourcing's runner, configured from hero's arguments alone (the
    read model's factory would read the process environment otherwise), that
    applies the events its subscription has read already in one transaction
    (:data:`BATCH_SIZE` at most) rather than one transaction each: a worker
    that has fallen behind catches up in batches."""

    @staticmethod
    def _construct_env(name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    @staticmethod
    def _process_events_loop(
        subscription: ApplicationSubscription[Any],
        projection: EventSourcedProjection[Any] | Projection[Any],
        is_stopping: threading.Event,
        runner: weakref.ReferenceType[ProjectionRunner[Any, Any]],
    ) -> None:
        """The runner's thread: apply the subscription's events until it
        stops. An error ends the thread and is kept for the runner to raise
        (from ``run_forever``, ``wait`` or leaving its block), as
        eventsourcing's own loop does."""
        applies = cast(ReadModelProjection, projection).process_events
        try:
            for batch in _batches(subscription):
                applies(batch)
        except BaseException as error:
            owner = runner()
            if owner is not None:
                owner._thread_error = error
            else:  # the runner was collected: nobody left to raise it
                logger.error("A projection runner failed", exc_info=error)
        finally:
            is_stopping.set()


#: Events a worker applies at most in one transaction.
BATCH_SIZE = 500


def _batches(
    subscription: ApplicationSubscription[Any],
) -> Iterator[list[tuple[Any, Tracking]]]:
    """The subscription's events in runs: each the next event (waited for)
    and those after it that the subscription has read already."""
    stored = cast(PollingSubscription, subscription.subscription)
    for first in subscription:
        batch = [first]
        while len(batch) < BATCH_SIZE and stored.ready():
            try:
                batch.append(next(subscription))
            except StopIteration:  # stopped meanwhile
                break
        yield batch


def _not_caught_up(alias: str, target: int | None, timeout: float) -> str:
    hint = ""
    if connections[alias].in_atomic_block:
        hint = (
            " This command was called inside a transaction on "
            f"{alias!r}: the projections read the store on connections of their "
            "own, which see only committed events. Commit first."
        )
    return f"Not caught up with position {target} after {timeout:.0f}s.{hint}"


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (signals can be
    handled in the main thread only; elsewhere, nothing is installed)."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
        if threading.current_thread() is threading.main_thread()
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _cleaned_up(runners: Sequence[ProjectionRunner[Any, Any]]) -> Iterator[None]:
    """Start the runners; on the way out stop them and close the database
    connections they and this thread opened."""
    try:
        for runner in runners:
            runner.__enter__()
        yield
    finally:
        for runner in runners:
            runner.__exit__(None, None, None)
        if not any(c.in_atomic_block for c in connections.all()):
            # Never a caller's connection while its transaction is open.
            connections.close_all()
        # The runners' threads have ended; collecting them closes the
        # database connections they opened.
        gc.collect()


def _ledger_class(alias: str) -> type[Ledger]:
    class FollowedLedger(Ledger):
        name = Ledger.name  # eventsourcing names subclasses after the class

        def __init__(self, env: Any = None) -> None:
            super().__init__(alias)

    return FollowedLedger


def _projection_class(names: Sequence[str]) -> type[ReadModelProjection]:
    return type(
        "ReadModelsProjection", (ReadModelProjection,), {"name": "+".join(names)}
    )


def _read_models_class(model_classes: Sequence[type[ReadModel]]) -> type[ReadModels]:
    return type("FollowedReadModels", (ReadModels,), {"model_classes": model_classes})

"""Helpers of the trust tests: child processes on the test database, snapshots of
hero's tables, a follower of the store, and the load that the workers run.

Parent side: :func:`child_environment` passes the test database's name and
hero's settings to a child; :class:`Child` runs ``python -m tests.trust_helpers
COMMAND ...`` and reads its output line by line; :func:`children` kills whatever
is still running when a test ends.

Child side (``python -m tests.trust_helpers``): :func:`setup_child` configures
Django with ``tests.settings``, then points the aliases at the *test* databases
(their names change per run), ``HERO_DATABASE`` and the test router at the
backend's alias. Commands:

``manage ARGS...``
    a management command, as ``python -m django ARGS...`` would run it.
``load CONFIG``
    an unlock worker: prints ``READY``, waits for ``GO <start> <seconds>`` on its
    stdin, calls ``hero.achievements.unlock`` until the time is up, prints
    ``RESULT <json>``.
``batch CONFIG``
    unlocks for many users in one ``transaction.atomic()``, prints ``HALFWAY
    <events visible in its transaction>`` part-way, then waits to be killed.

Only the standard library is imported at module level: a child imports this
module before Django is configured.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: JSON ``{alias: database NAME}`` of the parent's (test) databases.
ENV_DATABASES = "HERO_TRUST_DATABASES"
#: The alias a child works on (HERO_DATABASE and the router's alias).
ENV_ALIAS = "HERO_TRUST_ALIAS"
#: JSON of further settings for the child, e.g. ``{"HERO_PROJECTIONS": "async"}``.
ENV_SETTINGS = "HERO_TRUST_SETTINGS"

#: Levels of the test app's "points" achievement, by the points that earn them.
POINT_LEVELS = {10: 1, 100: 2, 1_000: 3, 10_000: 4}

Key = tuple[str, str]  # (user pk, achievement id)


def env_number(name: str, default: float) -> float:
    """A number from the environment (the long variants of the trust tests)."""
    value = os.environ.get(name)
    return float(value) if value else default


# Parent side: child processes ---------------------------------------------------


def child_environment(alias: str, **settings: Any) -> dict[str, str]:
    """The environment of a child that works on the test database ``alias``."""
    from django.conf import settings as django_settings

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    env[ENV_DATABASES] = json.dumps(
        {
            name: str(config["NAME"])
            for name, config in django_settings.DATABASES.items()
        }
    )
    env[ENV_ALIAS] = alias
    env[ENV_SETTINGS] = json.dumps(settings)
    return env


class Child:
    """A ``python -m tests.trust_helpers`` process whose output is read as it comes."""

    def __init__(self, args: Sequence[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.trust_helpers", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return "\n".join(self.lines)

    def expect(self, prefix: str, timeout: float) -> str:
        """Wait for a line that starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"{self.name}: no line starting with {prefix!r} after {timeout}s; "
                    f"output so far:\n{self.output()}"
                ) from None
            if line is None:
                self._queue.put(None)
                raise AssertionError(
                    f"{self.name} ended (status {self.process.wait()}) before printing "
                    f"{prefix!r}; output:\n{self.output()}"
                )
            if line.startswith(prefix):
                return line

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait(self, timeout: float) -> int:
        """Wait for the child to end by itself; its status."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s; output:\n{self.output()}"
            ) from None
        self._reader.join(timeout=10)
        return status

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)

    def close(self) -> None:
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class Children:
    """The children a test started; all are killed and reaped when it ends."""

    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(
        self, alias: str, *args: str, name: str | None = None, **settings: Any
    ) -> Child:
        child = Child(args, child_environment(alias, **settings), name or args[0])
        self.started.append(child)
        return child

    def manage(self, alias: str, *args: str, **settings: Any) -> Child:
        """``manage.py ARGS...`` in a child."""
        return self.start(
            alias, "manage", *args, name=f"manage.py {args[0]}", **settings
        )

    def close(self) -> None:
        for child in self.started:
            child.close()


@contextmanager
def children() -> Iterator[Children]:
    """Start children in the block; they never outlive it (nor keep connections)."""
    started = Children()
    try:
        yield started
    finally:
        started.close()


# Parent side: the store and hero's tables ---------------------------------------


def table_snapshot(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every hero table (store, tracking, catalog, read tables)."""
    from django.apps import apps

    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    for model in apps.get_app_config("hero").get_models():
        names = [f.attname for f in model._meta.concrete_fields]
        rows = model._default_manager.using(alias).values_list(*names)
        snapshot[model._meta.db_table] = sorted(
            (
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in rows
            ),
            key=repr,
        )
    return snapshot


def read_tables(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the projected tables (holdings, counts with holders, ledger)."""
    from hero.models import AchievementCount, AchievementUnlocked, LedgerEntry

    ledger_fields = [f.attname for f in LedgerEntry._meta.concrete_fields]
    return {
        "holdings": sorted(
            AchievementUnlocked.objects.using(alias).values_list(
                "user_id", "achievement_id", "level", "unlocked_at", "updated_at"
            )
        ),
        "counts": sorted(
            (a, level, n)
            for (a, level), n in AchievementCount.objects.using(alias).holders().items()
            if n
        ),
        "ledger": list(
            LedgerEntry.objects.using(alias)
            .order_by("position")
            .values_list(*ledger_fields)
        ),
    }


@contextmanager
def captured_signals() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal hero sends in the block, as (signal name, arguments)."""
    from hero import signals

    names = [
        "achievement_unlocked",
        "achievement_upgraded",
        "achievement_progressed",
        "achievement_revoked",
    ]
    sent: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in names:

        def receiver(name: str = name, **kwargs: Any) -> None:
            sent.append((name, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    try:
        yield sent
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


def all_notification_ids() -> list[int]:
    from hero.ledger import get_ledger

    recorder = get_ledger().recorder
    ids: list[int] = []
    while True:
        batch = recorder.select_notifications(
            start=ids[-1] if ids else 0, limit=5_000, inclusive_of_start=False
        )
        if not batch:
            return ids
        ids.extend(n.id for n in batch)


def domain_events() -> list[Any]:
    from hero.ledger import get_ledger

    ledger = get_ledger()
    notifications = ledger.recorder.select_notifications(start=None, limit=10_000_000)
    return [ledger.mapper.to_domain_event(n) for n in notifications]


def tracking(alias: str) -> dict[str, int]:
    """Every row of hero_tracking; a view that is current reads as the store's
    last position (read first, so never more than the view has applied)."""
    from django.db.models import Max

    from hero.models import StoredEvent, TrackingPosition
    from hero.store.positions import CURRENT

    last = StoredEvent.objects.using(alias).aggregate(last=Max("id"))["last"] or 0
    rows = TrackingPosition.objects.using(alias).values_list(
        "application_name", "notification_id"
    )
    return {name: last if value == CURRENT else value for name, value in rows}


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, every: float = 0.01
) -> Any:
    """Poll ``condition`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Unprintable:
    """A value whose ``repr()`` and ``str()`` raise, as a broken ``__repr__`` would."""

    def __repr__(self) -> str:
        raise RuntimeError("repr() failed")

    __str__ = __repr__


def nested(depth: int) -> list[Any]:
    """A list ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def make_users(alias: str, count: int, prefix: str = "trust") -> list[Any]:
    """``count`` saved users, created in one statement."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    manager = model._default_manager.db_manager(alias)
    users = manager.bulk_create([model(username=f"{prefix}{i}") for i in range(count)])
    if any(u.pk is None for u in users):  # a backend without RETURNING
        users = list(manager.filter(username__startswith=prefix).order_by("pk"))
    return users


def seed_store(
    alias: str, users: Sequence[Any], achievements: Sequence[str], levels: int
) -> int:
    """Record, for every user and achievement, an unlock and upgrades up to
    ``levels``, straight through the ledger (in batches); the events' count."""
    from hero.events import UserAchievement
    from hero.ledger import get_ledger

    ledger = get_ledger()
    pending = []
    for user in users:
        for achievement_id in achievements:
            aggregate = UserAchievement.start(str(user.pk), achievement_id)
            for level in range(1, levels + 1):
                aggregate.award(level, trigger="seeded", state={"level": level})
            pending.append(aggregate)
    for start in range(0, len(pending), 250):
        with ledger.datastore.owned_transaction():
            ledger.record(pending[start : start + 250])
    return len(users) * len(achievements) * levels


class StoreFollower(threading.Thread):
    """Follows the store as a projection would: reads the events after the last
    one it saw, again and again, and keeps every id in the order it saw them."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: list[int] = []
        self.reads = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connections

        from hero.ledger import get_ledger

        recorder = get_ledger().recorder
        try:
            while True:
                stopping = self._stop_event.is_set()
                while True:
                    batch = recorder.select_notifications(
                        start=self.seen[-1] if self.seen else 0,
                        limit=200,
                        inclusive_of_start=False,
                    )
                    self.reads += 1
                    self.seen.extend(n.id for n in batch)
                    if len(batch) < 200:
                        break
                if stopping:
                    return
                time.sleep(0.001)
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            connections.close_all()

    def finish(self, timeout: float = 60) -> None:
        """Read to the end of the store one last time, and stop."""
        self._stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), "the follower did not stop"

    def __enter__(self) -> StoreFollower:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.finish()


def late_ids(seen: Sequence[int], final: Sequence[int]) -> list[int]:
    """Ids in ``final`` that a follower went past without seeing: ids that were
    committed after a larger id had already been read."""
    seen_set = set(seen)
    last = seen[-1] if seen else 0
    return [i for i in final if i <= last and i not in seen_set]


# The load that workers run, and what to expect of it ----------------------------


def requested_levels(event: str, state: dict[str, Any]) -> dict[str, int]:
    """What each achievement of the test app answers to this call."""
    if event == "reports":
        return {"awards_first": state["level"]}
    if event == "score_changed":
        levels = {"points": POINT_LEVELS[state["points"]]}
        if state.get("night"):
            levels["night_owl"] = 1
        return levels
    return {}


@dataclass
class LoadConfig:
    """What one worker does; all workers share users, window and seconds."""

    users: list[int]
    seed: int
    #: Users targeted at once by every worker; the group moves on every ``window`` s.
    per_window: int = 3
    window: float = 0.5
    #: Share of calls made in the worker's own transaction, held open a little
    #: after the unlock (writers that commit late).
    slow: float = 0.2
    #: Share of calls that award nothing (only logged, when triggers are on).
    idle: float = 0.0


@dataclass
class LoadResult:
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    #: Highest level any successful call asked for, per (user, achievement).
    requested: dict[Key, int] = field(default_factory=dict)
    #: What callers were told: (user, achievement, level, previous level).
    outcomes: list[tuple[str, str, int, int | None]] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.calls += other.calls
        self.errors += other.errors
        for key, level in other.requested.items():
            self.requested[key] = max(level, self.requested.get(key, 0))
        self.outcomes += other.outcomes

    def to_json(self) -> str:
        return json.dumps(
            {
                "calls": self.calls,
                "errors": self.errors,
                "requested": [
                    [u, a, level] for (u, a), level in self.requested.items()
                ],
                "outcomes": self.outcomes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        data = json.loads(text)
        return cls(
            calls=data["calls"],
            errors=data["errors"],
            requested={(u, a): level for u, a, level in data["requested"]},
            outcomes=[tuple(o) for o in data["outcomes"]],  # type: ignore[misc]
        )


def run_load(
    started: Children,
    alias: str,
    users: Sequence[Any],
    *,
    workers: int,
    seconds: float,
    settings: dict[str, Any] | None = None,
    settings_of: Callable[[int], dict[str, Any]] | None = None,
    **config: Any,
) -> LoadResult:
    """Run ``workers`` unlock workers at once for ``seconds``; their merged result.

    ``settings`` apply to every worker; ``settings_of(index)`` adds a worker's own.
    """
    pks = [u.pk for u in users]
    procs = [
        started.start(
            alias,
            "load",
            json.dumps(LoadConfig(users=pks, seed=index, **config).__dict__),
            name=f"worker {index}",
            **(settings or {}),
            **(settings_of(index) if settings_of else {}),
        )
        for index in range(workers)
    ]
    for proc in procs:
        proc.expect("READY", timeout=120)
    start = time.time() + 0.1
    result = LoadResult()
    with commits_lingering(alias):
        for proc in procs:
            proc.send(f"GO {start} {seconds}")
        for proc in procs:
            line = proc.expect("RESULT ", timeout=seconds + 120)
            result.merge(LoadResult.from_json(line.removeprefix("RESULT ")))
            assert proc.wait(timeout=60) == 0, proc.output()
    return result


@contextmanager
def commits_lingering(alias: str) -> Iterator[None]:
    """On PostgreSQL, for the block: hold the mark of the store's last
    committed position from a connection of its own, a few milliseconds at a
    time. PostgreSQL lets go of a transaction's table locks an instant before
    its advisory locks, so every commit leaves its writer's mark behind it for
    a moment; this stretches that moment, so that the load's writers that
    catch a read model up meet it all through the run (the ledger once lost
    an entry there)."""
    from django.db import connections

    if connections[alias].vendor != "postgresql":
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_linger, args=(alias, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def _linger(alias: str, stop: threading.Event) -> None:
    from django.db import connections

    from hero.store.ordering import LOCK_CLASS

    connection = connections.create_connection(alias)
    try:
        with connection.cursor() as cursor:
            while not stop.wait(0.002):
                cursor.execute("SELECT max(id) FROM hero_stored_event")
                (last,) = cursor.fetchone()
                if last is None or last % 2**32 == 0:
                    continue
                # The mark's key: the position's low 32 bits, as a signed integer.
                key = last % 2**32 - (2**32 if last % 2**32 >= 2**31 else 0)
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_CLASS, key])
                stop.wait(0.005)
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, key])
    finally:
        connection.close()


# Child side ---------------------------------------------------------------------


def setup_child() -> str:
    """Configure Django as the parent's tests are; the alias to work on."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    # Settings must be changed before anything opens a connection.
    for alias, name in json.loads(os.environ[ENV_DATABASES]).items():
        if alias in settings.DATABASES:
            settings.DATABASES[alias]["NAME"] = name
    alias = os.environ[ENV_ALIAS]
    settings.HERO_DATABASE = alias
    for key, value in json.loads(os.environ.get(ENV_SETTINGS) or "{}").items():
        setattr(settings, key, value)

    import django

    django.setup()
    from tests import routers, store_log

    routers.current_alias = alias
    store_log.install_if_asked()
    return alias


def _load(alias: str, config: LoadConfig) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    import hero

    by_pk = {
        u.pk: u for u in get_user_model()._default_manager.filter(pk__in=config.users)
    }
    users = [by_pk[pk] for pk in config.users]
    rng = random.Random(config.seed)
    result = LoadResult()
    print("READY", flush=True)
    _, start_text, seconds_text = sys.stdin.readline().split()
    start, seconds = float(start_text), float(seconds_text)
    time.sleep(max(0.0, start - time.time()))

    while (elapsed := time.time() - start) < seconds:
        # Every worker targets the same few users at the same time.
        group = int(elapsed / config.window) * config.per_window
        user = users[(group + rng.randrange(config.per_window)) % len(users)]
        state: dict[str, Any]
        if rng.random() < config.idle:
            event, state = "nobody_listens", {"n": result.calls}
        elif rng.random() < 0.5:
            event, state = "reports", {"level": rng.randint(1, 4)}
        else:
            event = "score_changed"
            state = {
                "points": rng.choice(list(POINT_LEVELS)),
                "night": rng.random() < 0.3,
            }
        slow = rng.random() < config.slow
        try:
            if slow:
                with transaction.atomic(using=alias):
                    outcomes = hero.achievements.unlock(event, user=user, **state)
                    time.sleep(0.002)  # commits late, after others may have tried
            else:
                outcomes = hero.achievements.unlock(event, user=user, **state)
        except Exception:
            result.errors.append(traceback.format_exc(limit=6))
            continue
        finally:
            result.calls += 1
        for achievement_id, level in requested_levels(event, state).items():
            key = (str(user.pk), achievement_id)
            result.requested[key] = max(level, result.requested.get(key, 0))
        result.outcomes += [
            (str(user.pk), o.achievement_id, o.level, o.previous_level)
            for o in outcomes
        ]
    print("RESULT " + result.to_json(), flush=True)


def _batch(alias: str, config: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    import hero
    from hero.models import StoredEvent

    users = list(
        get_user_model()._default_manager.filter(pk__in=config["users"]).order_by("pk")
    )
    with transaction.atomic(using=alias):
        for index, user in enumerate(users, 1):
            hero.achievements.unlock("reports", user=user, level=1 + index % 4)
            if index == config["halfway"]:
                visible = StoredEvent.objects.using(alias).count()
                print(f"HALFWAY {visible}", flush=True)
                time.sleep(600)  # killed here, in the middle of the transaction
    print("COMMITTED", flush=True)


def main(argv: Sequence[str]) -> int:
    command, *args = argv
    alias = setup_child()
    from django.db import connections

    try:
        if command == "manage":
            from django.core.management import execute_from_command_line

            execute_from_command_line(["manage.py", *args])
        elif command == "load":
            _load(alias, LoadConfig(**json.loads(args[0])))
        elif command == "batch":
            _batch(alias, json.loads(args[0]))
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        connections.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def verify_passes() -> None:
    """hero_verify finds the store and the read tables in agreement (else the
    test fails with every difference it printed)."""
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    try:
        call_command("hero_verify", stdout=out)
    except CommandError as error:
        report = out.getvalue()
        raise AssertionError(
            f"{error}\n{report}{_around_differences(report)}"
        ) from None
    assert "The read tables match the event store" in out.getvalue(), out.getvalue()
    _no_read_passed_an_event()


def _no_read_passed_an_event() -> None:
    """When the test keeps a store log: no read of the log passed by an event
    that is in the store now (committed after the read; a follower would
    never apply it, and rebuilding a read model would hide that)."""
    from hero.conf import conf
    from hero.models import StoredEvent
    from tests import store_log

    path = store_log.flushed()
    if path is None:
        return
    events = StoredEvent.objects.using(conf.HERO_DATABASE)
    passed = store_log.passed_by(path, set(events.values_list("id", flat=True)))
    assert not passed, "reads passed events committed after them:\n" + "\n".join(
        f"position {position}:\n" + "\n".join(f"  {line}" for line in lines)
        for position, lines in passed.items()
    )


def _around_differences(report: str) -> str:
    """For a ledger entry reported missing: the followers' positions, and the
    store's events and the ledger's entries on either side of it."""
    from hero.conf import conf
    from hero.models import LedgerEntry, StoredEvent, TrackingPosition

    alias = conf.HERO_DATABASE
    lines = []
    for match in re.finditer(r"missing entry at position (\d+)", report):
        position = int(match.group(1))
        near = {"id__gte": position - 3, "id__lte": position + 3}
        lines.append(f"around position {position}:")
        events = StoredEvent.objects.using(alias).filter(**near).order_by("id")
        for event in events.values_list("id", "originator_version", "topic"):
            lines.append(f"  event {event}")
        entries = LedgerEntry.objects.using(alias).filter(
            position__gte=position - 3, position__lte=position + 3
        )
        for entry in entries.order_by("position").values_list(
            "position", "kind", "level", "recorded_at"
        ):
            lines.append(f"  entry {entry}")
        lines += [f"  {line}" for line in _logged(position)]
    if lines:
        tracking = TrackingPosition.objects.using(alias).values_list(
            "application_name", "notification_id"
        )
        lines.append(f"positions: {sorted(tracking)}")
    return "\n".join(lines)


def _logged(position: int) -> list[str]:
    """What the store log of the test (if it keeps one) says about ``position``."""
    from tests import store_log

    path = store_log.flushed()
    if path is None:
        return []
    return store_log.explain(path, position) or ["(nothing in the store log)"]

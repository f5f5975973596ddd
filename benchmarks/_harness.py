"""What every benchmark shares, so that each script keeps only what it measures:
options, Django on the run's own database (:func:`run_database`), the header,
tables, time and memory measured alike (``/proc/self/status`` on Linux), child
processes, and :class:`Report`: checks, headline figures and the JSON summary.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.metadata
import io
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # hero itself, when it is not installed
    sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
RESULT_MARK = "BENCHMARK-RESULT "


def proc_field(path: str, name: str) -> str | None:
    """The value of the line ``name: value`` of a /proc file (Linux), or None."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    found = (line.split(":", 1)[1] for line in lines if line.startswith(name))
    return next(found, "").strip() or None


def status(name: str) -> int | None:
    """A memory field of /proc/self/status in bytes, or None."""
    value = proc_field("/proc/self/status", name + ":")
    return None if value is None else int(value.split()[0]) * 1024


def lifetime_peak_rss() -> int:
    """The process's peak RSS over its whole life (``ru_maxrss``, in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """The peak RSS of this process from now on, and its rise above the RSS of now."""

    def __init__(self) -> None:
        self.before = status("VmRSS") or lifetime_peak_rss()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False

    def peak(self) -> int:
        """``VmHWM`` since the reset; the lifetime peak where it could not be reset."""
        return (self.reset and status("VmHWM")) or lifetime_peak_rss()

    def growth(self) -> int:
        return self.peak() - self.before


def mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


@contextmanager
def collected(
    start: Callable[[], object], stop: Callable[[], object]
) -> Iterator[None]:
    """Collect garbage, ``start()``, and ``stop()`` at the end."""
    gc.collect()
    start()
    try:
        yield
    finally:
        stop()


#: The garbage collector off: no collection lands in a timing.
gc_paused = functools.partial(collected, gc.disable, gc.enable)


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call, garbage collection paused."""
    with gc_paused():
        started, cpu = time.perf_counter(), time.process_time()
        call()
        return time.perf_counter() - started, time.process_time() - cpu


#: tracemalloc on, for :func:`traced_call`.
tracing = functools.partial(collected, tracemalloc.start, tracemalloc.stop)


def traced_call(call: Callable[[], object]) -> int:
    """Peak Python allocations of one call above those before it (under tracing)."""
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    call()
    return tracemalloc.get_traced_memory()[1] - before


def traced_peak(call: Callable[[], object]) -> int:
    """:func:`traced_call` with tracemalloc on for that one call only."""
    with tracing():
        return traced_call(call)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def hero_revision() -> str:
    """The commit of the hero being measured, marked when the tree has changes."""
    command = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine_line() -> str:
    """The CPUs this process may use (what ``nproc`` prints), the CPU, the load."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.processor() or "?"
    return (
        f"Machine: nproc {usable} (cpu_count {os.cpu_count()}), {cpu}, "
        f"load average {load_average()}"
    )


def versions_line(*others: str) -> str:
    """Python, SQLite, Django, eventsourcing, ``others``, and hero's git revision."""
    python = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    packages = [
        f"{name} {package_version(name)}" for name in ("Django", "eventsourcing")
    ]
    hero = f"django-hero {package_version('django-hero')} (git {hero_revision()})"
    return ", ".join([python, *packages, *others, hero])


def database_line() -> str:
    """The database Django's connection is on, with the settings the figures need."""
    from django.db import connection

    def show(statement: str) -> str:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return str(cursor.fetchone()[0])

    name = connection.settings_dict["NAME"]
    if connection.vendor == "mysql":
        query = (
            "SELECT CONCAT_WS(' ', @@innodb_flush_log_at_trx_commit, @@tx_isolation)"
        )
        return f"MariaDB/MySQL {show('SELECT VERSION()')} ({name}): {show(query)}"
    if connection.vendor == "postgresql":
        return (
            f"PostgreSQL {show('SHOW server_version')} "
            f"({connection.settings_dict['HOST'] or 'local socket'}, database {name}, "
            f"schema {show('SHOW search_path')}); synchronous_commit="
            f"{show('SHOW synchronous_commit')}, fsync={show('SHOW fsync')}"
        )
    synchronous = ("OFF", "NORMAL", "FULL", "EXTRA")[int(show("PRAGMA synchronous"))]
    journal = show("PRAGMA journal_mode")
    checkpoints = ""
    if journal == "wal":
        checkpoints = f", wal_autocheckpoint={show('PRAGMA wal_autocheckpoint')}"
    return (
        f"SQLite {show('SELECT sqlite_version()')} file {name}, journal_mode="
        f"{journal}{checkpoints}, synchronous={synchronous}, "
        f"transaction_mode={connection.transaction_mode}"
    )


def print_header(*lines: str, versions: Sequence[str] = ()) -> None:
    """Start the output: the machine, the versions, the database, then ``lines``."""
    header = (machine_line(), versions_line(*versions), database_line(), *lines)
    print(*header, sep="\n", end="\n\n")


def table_lines(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    left: int = 0,
    markdown: bool = False,
) -> list[str]:
    """A table as text (the first ``left`` columns aligned left) or as Markdown."""
    if markdown:
        return [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
            for row in (headers, ["---"] * len(headers), *rows)
        ]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    header = line(headers)
    return [header, "-" * len(header), *map(line, rows)]


def cell(value: Any, form: str = "{:,.0f}") -> str:
    """A figure in a table: "-" when missing, a list as its mean (min-max)."""
    if value is None:
        return "-"
    if not isinstance(value, list):
        return form.format(value)
    mean = form.format(sum(value) / len(value))
    return mean if len(value) == 1 else f"{mean} ({min(value):,.0f}-{max(value):,.0f})"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 0
) -> None:
    print("\n".join(table_lines(headers, rows, left=left)))


class Options(argparse.ArgumentParser):
    """A parser of the options every benchmark takes, and of those it adds."""

    def __init__(
        self,
        description: str,
        repeat: tuple[int, str] | None = None,
        store: tuple[str, int] | None = None,
        **more: Any,
    ) -> None:
        """``repeat``: --repeat, --summary; ``store``: --events, --keep, a child's."""
        super().__init__(description=description, **more)
        self.multiple = store[1] if store else 0
        if repeat:
            self.add("--repeat", *repeat)
            text = "also write the headline figures and checks as JSON to FILE"
            self.add("--summary", None, text + " (for run_all.py)", metavar="FILE")
        if store:
            text = f"events in the store at the largest size, a multiple of {store[1]}"
            self.add("--events", 1_000_000, text)
            text = f"build the database as DIR/{store[0]}.sqlite3 and keep it"
            self.add("--keep", None, text, metavar="DIR")
            self.add_argument(f"--measure-{store[0]}", help=argparse.SUPPRESS)

    def add(self, flag: str, default: Any, text: str, **more: Any) -> None:
        """An option of its default's type (False: a flag); its help gives the default."""
        if default is False:
            more["action"] = "store_true"
        elif default is not None:
            more.setdefault("type", type(default))
            text += f" (default {default})"
        self.add_argument(flag, default=default, help=text, **more)

    def parse(self, argv: Sequence[str] | None, *positive: str) -> argparse.Namespace:
        """Parse ``argv``: ``positive`` options at least 1, ``--events`` a multiple."""
        options = self.parse_args(argv)
        for name in positive:
            if getattr(options, name) < 1:
                self.error(f"--{name.replace('_', '-')} must be at least 1")
        events = getattr(options, "events", 0)
        if self.multiple and (events < self.multiple or events % self.multiple):
            self.error(f"--events must be a positive multiple of {self.multiple}")
        return options


def sqlite_database(
    path: str, journal: str = "wal", autocheckpoint: int | None = None
) -> dict[str, Any]:
    """Django's settings for a SQLite file: WAL, synchronous=NORMAL, BEGIN
    IMMEDIATE; or with ``journal="delete"``, Django's defaults (a rollback
    journal, synchronous=FULL, deferred transactions). ``autocheckpoint``: the
    WAL's ``wal_autocheckpoint`` in pages, if not SQLite's default."""
    options: dict[str, Any] = {"timeout": 30}
    if journal == "wal":
        pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        if autocheckpoint is not None:
            pragmas += f" PRAGMA wal_autocheckpoint={int(autocheckpoint)};"
        options.update(transaction_mode="IMMEDIATE", init_command=pragmas)
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": options}


def server_database(kind: str, name: str = "", **options: Any) -> dict[str, Any]:
    """Django's settings for database ``name`` (default: the URL's) on the server
    of ``HERO_BENCH_POSTGRES_URL`` or ``HERO_BENCH_MYSQL_URL``."""
    variable, default, engine = {
        "postgres": (
            "POSTGRES",
            "postgres://postgres@127.0.0.1:5432/hero_bench",
            "postgresql",
        ),
        "mysql": ("MYSQL", "mysql://root@127.0.0.1:3306/", "mysql"),
    }[kind]
    parts = urlsplit(address := os.environ.get(f"HERO_BENCH_{variable}_URL", default))
    if parts.scheme not in {kind, f"{kind}ql"}:
        raise SystemExit(
            f"HERO_BENCH_{variable}_URL must be a {kind}:// URL, not {address!r}"
        )
    return {
        "ENGINE": f"django.db.backends.{engine}",
        "NAME": name or unquote(parts.path.lstrip("/")) or "hero_bench",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"connect_timeout": 5, **options},
    }


def postgres_connect(config: dict[str, Any], dbname: str) -> Any:
    """A psycopg connection in autocommit, outside Django."""
    import psycopg

    server = {key.lower(): config[key] or None for key in ("HOST", "PORT", "USER")}
    server["password"] = config["PASSWORD"] or None
    return psycopg.connect(**server, dbname=dbname, connect_timeout=5, autocommit=True)


def reset_schema(config: dict[str, Any], schema: str, *, create: bool) -> None:
    """Drop the run's schema (on MariaDB/MySQL: its database), and with ``create``
    create it (on PostgreSQL, and its database)."""
    if config["ENGINE"].endswith("mysql"):
        import MySQLdb

        server = {key.lower(): config[key] for key in ("HOST", "USER", "PASSWORD")}
        with MySQLdb.connect(**server, port=int(config["PORT"] or 3306)) as connection:
            connection.cursor().execute(f"DROP DATABASE IF EXISTS `{schema}`")
            if create:
                connection.cursor().execute(
                    f"CREATE DATABASE `{schema}` CHARSET utf8mb4"
                )
        return
    from psycopg import sql

    if create:
        with postgres_connect(config, "postgres") as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (config["NAME"],)
            ).fetchone()
            if found is None:
                connection.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"]))
                )
    name = sql.Identifier(schema)
    with postgres_connect(config, config["NAME"]) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
        if create:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(name))


def close_connections() -> None:
    from django.conf import settings
    from django.db import connections

    if settings.configured:
        connections.close_all()


@contextmanager
def run_database(
    kind: str,
    name: str,
    *,
    keep: str | None = None,
    schema: str | None = None,
    journal: str = "wal",
    autocheckpoint: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Settings of the run's empty database, dropped at the end: a SQLite file
    (WAL, ``BEGIN IMMEDIATE``), a schema in ``HERO_BENCH_POSTGRES_URL``'s database,
    or a database on ``HERO_BENCH_MYSQL_URL``'s server."""
    if kind in {"postgres", "mysql"}:
        schema = schema or f"hero_{name}_bench"
        config = (
            server_database("mysql", schema, charset="utf8mb4")
            if kind == "mysql"
            else server_database("postgres", options=f"-c search_path={schema}")
        )
        reset_schema(config, schema, create=True)
        try:
            yield config
        finally:
            close_connections()
            reset_schema(config, schema, create=False)
        return
    directory = Path(keep or tempfile.mkdtemp(prefix=f"hero-{name}-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.sqlite3"
    if keep and path.exists():
        # Built anew, never over a database that is there already.
        raise SystemExit(f"{path} exists: remove it, or keep the new one elsewhere.")
    try:
        yield sqlite_database(str(path), journal, autocheckpoint)
    finally:
        close_connections()
        if keep:
            print(f"\nDatabase kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def setup_django(
    database: dict[str, Any],
    name: str,
    apps: Sequence[str] = ("hero",),
    *,
    migrate: bool = False,
    **more: Any,
) -> None:
    """Django on ``database`` with ``apps``, their tables created if ``migrate``."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        DEBUG=False,
        SECRET_KEY=f"{name}-benchmark",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", *apps],
        # pinax's migration creates an integer id; every model keeps in step.
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        HERO_DATABASE="default",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        **more,
    )
    django.setup()
    if migrate:
        call_command("migrate", verbosity=0, run_syncdb=True)


def create_users(names: Sequence[str]) -> list[Any]:
    """Bulk-create users with these usernames; return them, primary keys set."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    users = model.objects.bulk_create(
        [model(username=name, password="!") for name in names], batch_size=1000
    )
    if any(user.pk is None for user in users):
        raise SystemExit("bulk_create did not return primary keys (SQLite < 3.35?)")
    return list(users)


def users_named(names: Sequence[str]) -> list[Any]:
    """The users with these usernames, in the order given."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(username__in=list(names))
    found = {user.get_username(): user for user in users}
    if len(found) != len(set(names)):
        raise SystemExit(f"{len(set(names)) - len(found)} users are missing")
    return [found[name] for name in names]


def stored_events() -> int:
    from hero.models import StoredEvent

    return int(StoredEvent.objects.count())


def run_child(script: str, *arguments: str) -> dict[str, Any]:
    """Run ``script`` in a fresh process; return what it sent with report_to_parent."""
    command = [sys.executable, str(Path(script).resolve()), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise SystemExit(
        f"{Path(script).name} {' '.join(arguments)} failed (exit "
        f"{done.returncode}):\n{done.stdout}{done.stderr}"
    )


def report_to_parent(result: dict[str, Any]) -> int:
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


class Report:
    """What a run found: checks, headline figures against goals, the JSON summary."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.started = time.perf_counter()
        self.figures: dict[str, Any] = {}
        self.headline: list[list[str]] = []
        self.checked: list[str] = []
        self.failed: list[str] = []

    def check(self, problems: Sequence[str], done: str) -> None:
        """Record a check: what was checked (``done``), or what was wrong."""
        self.failed.extend(problems)
        self.checked.extend([] if problems else [done])

    def check_hero_verify(self) -> None:
        """Run ``hero_verify`` on the benchmark's database, as a check."""
        # Lazy: Django is set up by the benchmark, after this module loads.
        from django.core.management import CommandError, call_command

        out = io.StringIO()
        try:
            call_command("hero_verify", stdout=out)
            problems = []
        except CommandError as error:
            problems = [f"hero_verify: {error}\n{out.getvalue()}"]
        last_line = (out.getvalue().strip().splitlines() or [""])[-1]
        self.check(problems, f"hero_verify: {last_line}")

    def figure(
        self, figure: str, value: str, goal: str = "", met: bool | None = None
    ) -> None:
        """A headline figure, with its goal and whether the run met it."""
        verdict = "" if met is None else ("met" if met else "NOT met")
        self.headline.append([figure, value, goal, verdict])

    def finish(self, summary: str | None) -> int:
        """Print the headline figures and the checks, write the summary; the exit status."""
        columns = 4 if any(row[2] for row in self.headline) else 2
        print()
        print_table(
            ("figure", "value", "goal", "met?")[:columns],
            [row[:columns] for row in self.headline],
            left=columns,
        )
        print()
        for problem in self.failed:
            print(f"CHECK FAILED: {problem}")
        for line in self.checked:
            print(f"Checked: {line}")
        if summary:
            figures = {"benchmark": self.benchmark, **self.figures}
            figures.update(headline=self.headline, checks_passed=not self.failed)
            Path(summary).write_text(json.dumps(figures, indent=2) + "\n")
        print(
            f"\nWhole run {time.perf_counter() - self.started:.0f} s; "
            f"load average at the end {load_average()}"
        )
        return 1 if self.failed else 0

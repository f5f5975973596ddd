"""The audit, concurrency, latency and growth benchmarks, and unlock.py's trace of the
protocol and split of each call's time, run at tiny sizes, and their checks pass.

Each benchmark runs as its own process, as from the command line; the figures
mean nothing at these sizes, but the checks of what was read and written are
the same as in a full run. The PostgreSQL benchmarks run in the test run's
PostgreSQL test database, each in a schema of its own, and are skipped when the
run has no PostgreSQL (under CI that is an error already, see
:mod:`tests.databases`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def run_benchmark(
    script: str, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def checked_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Checked: ")]


def passing_run(
    tmp_path: Path, script: str, *arguments: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``script`` with ``arguments`` and a JSON summary; require that it
    exits 0 with every check passed; return its run and its summary."""
    summary = tmp_path / f"{Path(script).stem}.json"
    done = run_benchmark(script, *arguments, "--summary", str(summary), env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "CHECK FAILED" not in output
    figures: dict[str, Any] = json.loads(summary.read_text())
    assert figures["checks_passed"] is True
    return done, figures


def postgres_url() -> str:
    """The test run's PostgreSQL test database (created by ``django_db_setup``,
    dropped at the end of the run with whatever schema is left in it)."""
    config: dict[str, Any] = connections[
        settings.BACKEND_ALIASES["postgres"]
    ].settings_dict
    user = quote(config.get("USER") or "", safe="")
    password = quote(config.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = config.get("HOST") or "127.0.0.1"
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(config['NAME'], safe='')}"


def test_audit_benchmark_checks_every_audited_user(tmp_path: Path) -> None:
    done, figures = passing_run(
        tmp_path, "audit.py", "--events", "2000", "--repeat", "10", "--passes", "1"
    )
    output = done.stdout + done.stderr
    checked = checked_lines(done.stdout)
    assert [line.split(" events:")[0] for line in checked] == [
        "Checked: 20",
        "Checked: 200",
        "Checked: 2,000",
    ], output
    assert all("each with its 10 entries in order" in line for line in checked)
    assert figures["sizes"] == [20, 200, 2000]
    assert set(figures["ratio_largest_to_smallest"]) == {
        "history",
        "hero_audit",
        "spread",
    }


needs_postgres = pytest.mark.skipif(
    "postgres" not in settings.BACKEND_ALIASES,
    reason="the benchmark needs PostgreSQL, which this run does not have",
)


def postgres_env() -> dict[str, str]:
    return {**os.environ, "HERO_BENCH_POSTGRES_URL": postgres_url()}


@needs_postgres
def test_concurrency_benchmark_checks_what_the_workers_wrote(
    tmp_path: Path, django_db_setup: None
) -> None:
    done, figures = passing_run(
        tmp_path,
        "concurrency.py",
        "--workers",
        "1,2",
        "--users",
        "10",
        "--repeat",
        "1",
        "--scenarios",
        "own,shared",
        "--schema",
        f"hero_concurrency_test_{os.getpid()}",
        env=postgres_env(),
    )
    output = done.stdout + done.stderr
    database = connections[settings.BACKEND_ALIASES["postgres"]].settings_dict["NAME"]
    assert f"database {database}, schema hero_concurrency_test_" in done.stdout
    checked = checked_lines(done.stdout)
    users = {
        "own users, 1 worker(s)": 10,
        "own users, 2 worker(s)": 20,
        "shared users, 2 worker(s)": 10,
    }
    for scenario, count in users.items():
        assert any(
            line.startswith(f"Checked: {scenario}: {count} users,") for line in checked
        ), output
    assert set(figures["own"]) == {"1", "2"}
    # Both workers made the same 20 calls; one of them won each award.
    shared = figures["shared"]["2"]
    assert shared["gave_up"] == 0


def quick_requests(tmp_path: Path, *more: str) -> tuple[Any, dict[str, Any]]:
    """concurrency.py's requests at small sizes (1 and 2 workers, holding 0 and
    50 ms, 0.2 s each) with ``more`` options; its run, and its figures once
    it passed every check."""
    return passing_run(
        tmp_path,
        "concurrency.py",
        "--quick",
        "--scenarios",
        "requests",
        "--holds",
        "50",
        "--seconds",
        "0.2",
        *more,
        "--schema",
        f"hero_requests_test_{os.getpid()}",
        env=postgres_env(),
    )


@needs_postgres
def test_concurrency_benchmark_checks_requests_with_async_projections(
    tmp_path: Path, django_db_setup: None
) -> None:
    done, figures = quick_requests(tmp_path, "--projections", "async")
    output = done.stdout + done.stderr
    checked = "\n".join(checked_lines(done.stdout))
    assert "Checked: requests: " in checked, output
    assert "Checked: hero_project caught up with the store" in checked, output
    assert "Checked: hero_verify: The read tables match the event store" in checked
    # Every variant ran with 1 and 2 workers, holding 0 (always) and 50 ms.
    assert {
        variant: {workers: sorted(by_hold) for workers, by_hold in runs.items()}
        for variant, runs in figures["requests"].items()
    } == {
        variant: {"1": ["0", "50"], "2": ["0", "50"]}
        for variant in ("same", "three", "triggers")
    }
    cell = figures["requests"]["same"]["2"]["50"]
    assert cell["awards"] > 0
    assert cell["ratio"] == pytest.approx(cell["awards_per_second"] / cell["ideal"])


@needs_postgres
def test_concurrency_benchmark_sets_the_requests_against_pinax_badges(
    tmp_path: Path, django_db_setup: None
) -> None:
    pytest.importorskip("pinax.badges", reason="pinax-badges 3.0.0 is not installed")
    done, figures = quick_requests(tmp_path, "--variants", "same,pinax")
    output = done.stdout + done.stderr
    checked = "\n".join(checked_lines(done.stdout))
    assert "pinax-badges: its " in checked, output
    assert "each left one BadgeAward at its first level" in checked, output
    assert set(figures["requests"]) == {"same", "pinax"}
    for workers in ("1", "2"):
        hero = figures["requests"]["same"][workers]["50"]
        pinax = figures["requests"]["pinax"][workers]["50"]
        assert pinax["awards"] > 0
        assert hero["to_reference"] == pytest.approx(
            hero["awards_per_second"] / pinax["awards_per_second"]
        )
    assert "hero (same) / pinax awards/s" in done.stdout


@needs_postgres
def test_latency_benchmark_sees_every_award_reach_the_read_tables(
    tmp_path: Path, django_db_setup: None
) -> None:
    done, figures = passing_run(
        tmp_path,
        "latency.py",
        "--awards",
        "10",
        "--gap",
        "5",
        "--backlog",
        "20",
        "--schema",
        f"hero_latency_test_{os.getpid()}",
        env=postgres_env(),
    )
    output = done.stdout + done.stderr
    checked = checked_lines(done.stdout)
    assert checked[:2] == [
        "Checked: hero_project applied the backlog of 20 awards",
        "Checked: each of the 10 awards appeared in the holdings and the ledger",
    ], output
    assert figures["backlog"]["events"] == 20
    assert 0 < figures["backlog"]["seconds"] < 30
    assert {name: table["seen"] for name, table in figures["tables"].items()} == {
        "holdings": 10,
        "ledger": 10,
    }


def growth_run(tmp_path: Path, *arguments: str, env: Any = None) -> dict[str, Any]:
    done, figures = passing_run(
        tmp_path, "growth.py", "--awards", "120", "--block", "20", *arguments, env=env
    )
    assert checked_lines(done.stdout)[0] == (
        "Checked: the store holds the 220 awards' events"
    ), done.stdout + done.stderr
    assert len(figures["ms_per_award"]) == 6
    assert figures["ratio"] == pytest.approx(figures["last_ms"] / figures["first_ms"])
    return figures


def test_growth_benchmark_times_every_block_on_sqlite(tmp_path: Path) -> None:
    growth_run(tmp_path, "--database", "sqlite")


@needs_postgres
def test_growth_benchmark_times_every_block_on_postgresql(
    tmp_path: Path, django_db_setup: None
) -> None:
    growth_run(
        tmp_path, "--schema", f"hero_growth_test_{os.getpid()}", env=postgres_env()
    )


@needs_postgres
def test_linking_benchmark_links_every_event_of_the_backlog(
    tmp_path: Path, django_db_setup: None
) -> None:
    done, figures = passing_run(
        tmp_path,
        "linking.py",
        "--events",
        "1500",
        "--schema",
        f"hero_linking_test_{os.getpid()}",
        env=postgres_env(),
    )
    output = done.stdout + done.stderr
    assert checked_lines(done.stdout)[:3] == [
        "Checked: the 1,500 awards' events waited to be linked",
        "Checked: every event linked (1,500)",
        "Checked: the chain verifies to the last event",
    ], output
    assert figures["events"] == 1500
    assert 0 < figures["seconds"] < 30


@needs_postgres
def test_unlock_benchmark_counts_exchanges_from_the_libpq_trace(
    tmp_path: Path, django_db_setup: None
) -> None:
    pytest.importorskip("pinax.badges", reason="pinax-badges 3.0.0 is not installed")
    summary, trace = tmp_path / "unlock.json", tmp_path / "trace.txt"
    done = run_benchmark(
        "unlock.py",
        "--database",
        "postgres",
        "--users",
        "5",
        "--repeat",
        "1",
        "--trace",
        str(trace),
        "--cpu",
        "--summary",
        str(summary),
        env=postgres_env(),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "CHECK FAILED" not in output
    figures = json.loads(summary.read_text())
    exchanges = figures["exchanges"]
    # Awarding nothing sends nothing; every award waits for the server.
    assert exchanges["a"] == {"hero": 0, "pinax": 0}
    assert all(exchanges[path][lib] >= 1 for path in "bc" for lib in ("hero", "pinax"))
    written = trace.read_text()
    assert written.startswith("# hero (a) awards nothing: 0 exchanges")
    assert f"# hero (b) first award: {exchanges['b']['hero']} exchanges" in written
    assert "# exchange 1\nF\t" in written
    # The server runs here: its share of each award is measured, apart.
    spent = figures["spent_us"]
    for library in ("hero", "pinax"):
        award = spent["b"][library]
        assert award["server"] > 0
        assert 0 < award["process"] < award["wall"]
        assert award["process"] + award["server"] <= award["wall"] * 1.05
    assert "Where a call's time goes" in output
    # Every award writes to the server's WAL; awarding nothing writes none.
    written = figures["written_kb"]
    assert all(written[path][lib] > 0 for path in "bc" for lib in ("hero", "pinax"))
    assert written["a"] == {"hero": 0, "pinax": 0}
    assert "What a call writes" in output


#: unlock.py with hero alone, on a few users: it runs wherever the suite does,
#: pinax-badges or not.
HERO_ALONE = ("--only", "hero", "--users", "5", "--repeat", "1")


@pytest.mark.parametrize("projections", ["inline", "async"])
def test_unlock_benchmark_splits_a_calls_time_on_sqlite(
    tmp_path: Path, projections: str
) -> None:
    summary = tmp_path / "unlock.json"
    done = run_benchmark(
        "unlock.py",
        *HERO_ALONE,
        "--cpu",
        "--projections",
        projections,
        "--summary",
        str(summary),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "CHECK FAILED" not in output
    figures = json.loads(summary.read_text())
    assert figures["projections"] == projections
    # The header says how hero projected.
    assert f"hero's projections {projections}" in output
    spent = figures["spent_us"]
    # SQLite works in the process: no server's share.
    for path in "bcd":
        hero = spent[path]["hero"]
        assert hero["server"] is None
        assert 0 < hero["process"] <= hero["wall"] * 1.05
    # What the process wrote to its files: each award writes a page or more
    # of the WAL; a call that awards nothing writes nothing.
    written = figures["written_kb"]
    assert written["b"]["hero"] >= 4 and written["c"]["hero"] >= 4
    assert written["a"]["hero"] == 0
    assert "What a call writes" in output
    assert "journal_mode=wal, wal_autocheckpoint=1000," in output


def test_unlock_benchmark_can_leave_sqlite_checkpoints_out(tmp_path: Path) -> None:
    done = run_benchmark("unlock.py", *HERO_ALONE, "--wal-autocheckpoint", "0")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "journal_mode=wal, wal_autocheckpoint=0," in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--journal", "delete"], "needs SQLite with --journal wal"),
        (["--database", "postgres"], "needs SQLite with --journal wal"),
        (["--wal-autocheckpoint", "-1"], "0 or more pages"),
    ],
)
def test_unlock_benchmark_refuses_checkpoints_it_cannot_set(
    arguments: list[str], message: str
) -> None:
    wal = [] if "--wal-autocheckpoint" in arguments else ["--wal-autocheckpoint", "0"]
    done = run_benchmark("unlock.py", *wal, *arguments)
    assert done.returncode == 2
    assert message in done.stderr

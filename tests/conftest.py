"""Runs every database test once per backend (SQLite and PostgreSQL).

A test that takes the ``backend`` fixture is parametrized over the backends of
the run (see :mod:`tests.databases`); its ``django_db`` mark is pointed at that
backend's database, every model is routed there, and ``HERO_DATABASE`` names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from tests import routers

BACKENDS = ("sqlite", "postgres", "mysql")


@dataclass(frozen=True)
class Backend:
    name: str
    alias: str


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        "hero: databases "
        + ", ".join(
            f"{name}={alias}" for name, alias in settings.BACKEND_ALIASES.items()
        )
    ]
    lines += [f"hero: {reason}" for reason in settings.SKIPPED_BACKENDS.values()]
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    params = []
    for name in BACKENDS:
        if name in settings.BACKEND_ALIASES:
            params.append(pytest.param(name, id=name))
        elif name in settings.SKIPPED_BACKENDS:
            reason = settings.SKIPPED_BACKENDS[name]
            params.append(
                pytest.param(name, id=name, marks=pytest.mark.skip(reason=reason))
            )
    metafunc.parametrize("backend", params, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec else None
        if name not in settings.BACKEND_ALIASES:
            continue
        marker = item.get_closest_marker("django_db")
        kwargs = dict(marker.kwargs) if marker else {}
        kwargs["databases"] = [settings.BACKEND_ALIASES[name]]
        item.add_marker(pytest.mark.django_db(**kwargs), append=False)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    from hero.ledger import get_ledger

    alias = settings.BACKEND_ALIASES[request.param]
    previous = routers.current_alias
    routers.current_alias = alias
    try:
        with override_settings(HERO_DATABASE=alias):
            # Levels another test's users held (their ids come back): a hint
            # of how a call will write, which tests of round trips count on.
            get_ledger()._levels_seen.clear()
            yield Backend(name=request.param, alias=alias)
    finally:
        routers.current_alias = previous


@pytest.fixture
def make_user(backend: Backend, django_user_model: Any) -> Any:
    """Create users on the backend's database: make_user() or make_user("ann")."""
    counter = iter(range(1, 1_000_000))

    def make(username: str | None = None) -> Any:
        name = username or f"user{next(counter)}"
        return django_user_model.objects.db_manager(backend.alias).create_user(name)

    return make


@pytest.fixture
def isolated_registry() -> Iterator[Any]:
    """The achievement registry, restored after the test (define classes freely)."""
    from hero.registry import registry

    snapshot = registry.snapshot()
    try:
        yield registry
    finally:
        registry.restore(snapshot)


def stored_domain_events(alias: str | None = None) -> list[Any]:
    """Every domain event in the store, in order."""
    from hero.ledger import get_ledger

    ledger = get_ledger()
    notifications = ledger.recorder.select_notifications(start=None, limit=1_000_000)
    return [ledger.mapper.to_domain_event(n) for n in notifications]


@pytest.fixture(params=["sqlite", "postgres"])
def down_alias(request: pytest.FixtureRequest) -> Iterator[str]:
    """An alias, of each backend, whose database cannot be reached (no server
    is needed: nothing listens on port 1, and the SQLite file's directory is
    missing)."""
    configs = {
        "postgres": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "hero",
            "HOST": "127.0.0.1",
            "PORT": "1",
            "OPTIONS": {"connect_timeout": 5},
        },
        "sqlite": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": "/nonexistent-directory/hero.sqlite3",
        },
    }
    alias = f"down_{request.param}"
    configured = connections.configure_settings(
        {
            "default": {"ENGINE": "django.db.backends.dummy"},
            alias: configs[request.param],
        }
    )
    connections.settings[alias] = configured[alias]
    settings.DATABASES[alias] = configured[alias]
    try:
        yield alias
    finally:
        from hero import ledger

        ledger._ledgers.pop(alias, None)
        connections[alias].close()
        del connections[alias]
        # connections.settings may be settings.DATABASES itself.
        connections.settings.pop(alias, None)
        settings.DATABASES.pop(alias, None)

"""hero's API for async code (``aunlock``, ``arevoke``, ``ahistory``,
``alevels``): awaited from async views, through Django's ``AsyncClient`` and
under a real ASGI server (uvicorn, in a thread of the test run), with signals
sent once the change is committed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest
import uvicorn
from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.db import connections
from django.test import AsyncClient

import hero
from hero.conf import conf
from hero.models import AchievementUnlocked
from hero.signals import (
    achievement_revoked,
    achievement_unlocked,
    achievement_upgraded,
)
from tests.conftest import Backend

#: The async views of tests/asyncviews.py.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received() -> Iterator[list[dict[str, Any]]]:
    """What hero's signals were sent with, and whether a transaction was open."""
    calls: list[dict[str, Any]] = []
    names = {
        achievement_unlocked: "unlocked",
        achievement_upgraded: "upgraded",
        achievement_revoked: "revoked",
    }

    def receiver(signal: Any, user: Any, level: int, **kwargs: Any) -> None:
        calls.append(
            {
                "signal": names[signal],
                "user": user.username,
                "level": level,
                "in_transaction": connections[conf.HERO_DATABASE].in_atomic_block,
                "thread": threading.current_thread(),
            }
        )

    for signal in names:
        signal.connect(receiver, dispatch_uid="test_async")
    try:
        yield calls
    finally:
        for signal in names:
            signal.disconnect(dispatch_uid="test_async")


@pytest.fixture
def async_views(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.asyncviews"


def test_async_views_unlock_revoke_and_read_with_the_async_client(
    backend: Backend, make_user: Any, async_views: None, received: list[Any]
) -> None:
    # Arrange: ann, and a moderator signed in.
    ann, moderator = make_user("ann"), make_user("mod")
    client = AsyncClient()
    client.force_login(moderator)

    # Act: the views await aunlock() and alevels(), then arevoke() and ahistory().
    awarded = async_to_sync(client.post)("/award/ann/", {"points": "100"})
    revoked = async_to_sync(client.post)("/revoke/ann/", {"reason": "cheating"})

    # Assert: what each view answered, and what the store and tables hold.
    assert awarded.status_code == 200, awarded.content
    assert awarded.json() == {
        "outcomes": [["points", 2, None]],
        "levels": {"points": 2},
    }
    assert revoked.json() == {
        "revoked": ["points", 2, f"auth.user:{moderator.pk}"],
        "history": ["unlocked", "revoked"],
    }
    assert not AchievementUnlocked.objects.filter(user=ann).exists()
    # Signals were sent once the changes were committed, never inside them.
    assert [
        (c["signal"], c["user"], c["level"], c["in_transaction"]) for c in received
    ] == [
        ("unlocked", "ann", 2, False),
        ("revoked", "ann", 2, False),
    ]


def test_an_async_caller_awaits_each_function(
    backend: Backend, make_user: Any, received: list[Any]
) -> None:
    ann = make_user("ann")

    async def work() -> tuple[Any, ...]:
        outcomes = await hero.achievements.aunlock("score_changed", user=ann, points=10)
        levels = await hero.achievements.alevels(ann)
        revocation = await hero.achievements.arevoke(ann, "points", reason="test")
        history = await hero.achievements.ahistory(ann)
        return outcomes, levels, revocation, history

    outcomes, levels, revocation, history = async_to_sync(work)()

    assert [(o.achievement_id, o.level) for o in outcomes] == [("points", 1)]
    assert levels == {"points": 1}
    assert (revocation.achievement_id, revocation.reason) == ("points", "test")
    assert [e.kind for e in history] == ["unlocked", "revoked"]
    assert hero.achievements.levels(ann) == {}
    assert [c["signal"] for c in received] == ["unlocked", "revoked"]


def test_errors_reach_the_awaiting_caller(backend: Backend, make_user: Any) -> None:
    from hero.exceptions import InvalidUser, NotHeldError

    ann = make_user("ann")

    with pytest.raises(InvalidUser):
        async_to_sync(hero.achievements.aunlock)("score_changed", user=None)
    with pytest.raises(NotHeldError):
        async_to_sync(hero.achievements.arevoke)(ann, "points", reason="x")


# Under an ASGI server ---------------------------------------------------------


@pytest.fixture
def asgi_server(settings: Any, async_views: None) -> Iterator[str]:
    """uvicorn serving the test project on 127.0.0.1, in a thread of this
    process (so it uses the test databases); its base URL."""
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            get_asgi_application(),
            lifespan="off",
            log_level="warning",
            loop="asyncio",
            http="h11",
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listening]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, (
            "uvicorn did not start"
        )
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


def post(url: str, **data: str) -> Any:
    with urlopen(url, data=urlencode(data).encode(), timeout=30) as response:
        return json.load(response)


def test_async_views_under_an_asgi_server(
    backend: Backend, make_user: Any, asgi_server: str, received: list[Any]
) -> None:
    # Arrange
    ann = make_user("ann")

    # Act: two requests, an unlock then an upgrade, over HTTP.
    first = post(f"{asgi_server}/award/ann/", points="100")
    second = post(f"{asgi_server}/award/ann/", points="1000")

    # Assert: the answers, the read tables, and the signals after the commit,
    # sent from the server's thread for sync code, not from the test's.
    assert first == {"outcomes": [["points", 2, None]], "levels": {"points": 2}}
    assert second == {"outcomes": [["points", 3, 2]], "levels": {"points": 3}}
    assert AchievementUnlocked.objects.get(user=ann).level == 3
    assert [(c["signal"], c["level"], c["in_transaction"]) for c in received] == [
        ("unlocked", 2, False),
        ("upgraded", 3, False),
    ]
    assert all(c["thread"] is not threading.current_thread() for c in received)

"""The achievements page in a real browser: headless Chromium, driven by Playwright.

Django's live server serves the demo's achievements (``example/demo_app``)
and the activity its script simulates (``example/demo.py``). The browser signs
in as a demo user through the sign-in form, checks what each state shows, and
saves a screenshot to ``test-output/achievements-<backend>.png``. With
``HERO_UPDATE_DOCS_SCREENSHOT=1`` the SQLite run also refreshes the one in the
docs (``docs/images/achievements-page.png``).

Chromium is Debian's ``chromium`` package (``HERO_CHROMIUM`` names another
binary); Playwright never downloads a browser here. Without Chromium or
Playwright the test is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db.models import F, Q

import hero
from hero import AchievementBase
from hero.catalog import sync_catalog
from hero.conf import conf
from hero.models import Achievement, AchievementProgress, AchievementUnlocked
from tests.conftest import Backend

#: Enough simulated users that some show every state (the demo is seeded).
DEMO_USERS = 40
ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "achievements-page.png"
CHROMIUM = os.environ.get("HERO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def chromium_path() -> str:
    reason = _unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test, but {reason}")
    if reason:
        pytest.skip(reason)
    return CHROMIUM


# The demo's achievements and activity ----------------------------------------

EXAMPLE = ROOT / "example"


def _load(path: Path, name: str) -> types.ModuleType:
    """Import a file of the demo under a private name (no auto-registration:
    the name does not end in ``achievements``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo(backend: Backend, isolated_registry: Any) -> Iterator[types.ModuleType]:
    """The demo's catalog instead of the test app's, and its script's helpers."""
    achievements = _load(EXAMPLE / "demo_app" / "achievements.py", "_hero_demo_app")
    for achievement_id in [a.id for a in isolated_registry]:
        isolated_registry.remove(achievement_id)
    for value in vars(achievements).values():
        if (
            isinstance(value, type)
            and issubclass(value, AchievementBase)
            and value.__module__ == achievements.__name__
        ):
            hero.achievements.register(value)
    sync_catalog(backend.alias)
    yield _load(EXAMPLE / "demo.py", "_hero_demo_script")


@dataclass(frozen=True)
class Visitor:
    """A demo user whose page shows every state, and what it should show."""

    username: str
    unlocked: dict[str, str]  # achievement id: level name
    progress: tuple[str, int, int]  # achievement id, steps, total
    hidden: list[str]  # texts of the secret and invisible achievements


def pick_visitor() -> Visitor:
    """The demo user who holds the most achievements while part-way through
    one with steps, and holds neither the secret nor the invisible ones."""
    hidden = Achievement.objects.listed().filter(Q(secret=True) | Q(invisible=True))
    hidden_ids = set(hidden.values_list("id", flat=True))
    assert (
        hidden.filter(secret=True).exists() and hidden.filter(invisible=True).exists()
    )
    names = dict(conf.ACHIEVEMENT_LEVELS)
    candidates = []
    in_progress = AchievementProgress.objects.filter(steps__gt=0, steps__lt=F("total"))
    for progress in in_progress.select_related("user"):
        held = dict(
            AchievementUnlocked.objects.filter(user=progress.user_id).values_list(
                "achievement_id", "level"
            )
        )
        if held and not set(held) & hidden_ids:
            candidates.append((-len(held), progress.user.username, held, progress))
    assert candidates, "no demo user shows every state: simulate more users"
    _, username, held, progress = min(candidates, key=lambda c: c[:2])
    return Visitor(
        username=username,
        unlocked={a: names[level] for a, level in held.items()},
        progress=(progress.achievement_id, progress.steps, progress.total),
        hidden=[text for a in hidden for text in (a.id, a.title, a.description)],
    )


# The test --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_achievements_page_in_chromium(
    backend: Backend, demo: types.ModuleType, live_server: Any, chromium_path: str
) -> None:
    from playwright.sync_api import sync_playwright

    # Arrange: the demo's activity (all database work happens before
    # Playwright starts its event loop in this thread).
    demo.simulate(demo.create_users(DEMO_USERS))
    visitor = pick_visitor()
    listed = Achievement.objects.listed().filter(invisible=False).count()
    OUTPUT.mkdir(exist_ok=True)
    screenshot = OUTPUT / f"achievements-{backend.name}.png"
    url = f"{live_server.url}/achievements/"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            # Short: the full-page screenshot grows to fit, with no empty space.
            context = browser.new_context(viewport={"width": 1100, "height": 560})
            page = context.new_page()
            page.set_default_timeout(15_000)
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))

            # Act: open the page, which asks to sign in first, and come back.
            page.goto(url)
            assert "/accounts/login/?next=/achievements/" in page.url
            page.fill('input[name="username"]', visitor.username)
            page.fill('input[name="password"]', "demo")
            page.click('input[type="submit"]')
            page.wait_for_url(url)
            page.wait_for_load_state("networkidle")

            # Assert: the page, its stylesheet and every image loaded.
            assert page.title() == "Your achievements"
            summary = page.locator(".hero-summary").inner_text()
            assert summary.startswith(f"{len(visitor.unlocked)} of {listed}")
            grid = "getComputedStyle(document.querySelector('.hero-grid')).display"
            assert page.evaluate(grid) == "grid"
            every_image_loaded = (
                "Array.from(document.images).every(i => i.complete && i.naturalWidth)"
            )
            assert page.evaluate(every_image_loaded)
            assert all(u.startswith(live_server.url) for u in requested), requested

            # Unlocked: level name, a date and the unlocked image.
            for achievement_id, level_name in visitor.unlocked.items():
                card = page.locator(f'[data-achievement="{achievement_id}"]')
                assert "hero-unlocked" in card.get_attribute("class")
                assert level_name in card.inner_text()
                assert card.locator("time").count() == 1
                src = card.locator("img").get_attribute("src")
                assert src.endswith("default-unlocked.jpg")
            # Locked, part-way: title, description, locked image, progress bar.
            achievement_id, steps, total = visitor.progress
            card = page.locator(f'[data-achievement="{achievement_id}"]')
            assert "hero-locked" in card.get_attribute("class")
            assert f"{steps} / {total}" in card.inner_text()
            bar = card.locator("progress").evaluate("p => [p.value, p.max]")
            assert bar == [steps, total]
            src = card.locator("img").get_attribute("src")
            assert src.endswith("default-locked.jpg")
            # Secret: a placeholder with the secret image; invisible: nothing.
            secret = page.locator(".hero-secret")
            assert secret.count() == 1
            assert secret.inner_text().strip() == "Secret achievement"
            src = secret.locator("img").get_attribute("src")
            assert src.endswith("default-secret.jpg")
            html = page.content()
            for text in visitor.hidden:
                assert text not in html, f"{text!r} leaked"
            # The notices of new unlocks.
            assert "You unlocked" in page.locator(".hero-notices").inner_text()

            page.screenshot(path=str(screenshot), full_page=True)

            # Marking notices seen is a real form POST, CSRF token included.
            page.get_by_role("button", name="Got it").click()
            page.wait_for_url(url)
            assert page.locator(".hero-notices").count() == 0

            # Narrow screens: one column, nothing wider than the screen.
            page.set_viewport_size({"width": 390, "height": 800})
            columns = page.evaluate(
                "getComputedStyle(document.querySelector('.hero-grid'))"
                ".gridTemplateColumns.split(' ').length"
            )
            assert columns == 1
            assert page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"
            )

            # The details page of an unlocked achievement: the visitor's level
            # is the highlighted rung of the ladder.
            page.set_viewport_size({"width": 1100, "height": 560})
            achievement_id, level_name = next(iter(visitor.unlocked.items()))
            page.locator(f'[data-achievement="{achievement_id}"] a').click()
            page.wait_for_load_state("networkidle")
            assert page.url == f"{url}{achievement_id}/"
            assert page.locator("tr.hero-held").inner_text().startswith(level_name)
            page.screenshot(
                path=str(OUTPUT / f"achievement-detail-{backend.name}.png"),
                full_page=True,
            )
        finally:
            browser.close()

    assert screenshot.stat().st_size > 10_000
    if (
        backend.name == "sqlite"
        and os.environ.get("HERO_UPDATE_DOCS_SCREENSHOT") == "1"
    ):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)

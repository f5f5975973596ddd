"""The achievements page in a real browser: headless Chromium, driven by Playwright.

Django's live server serves a small demo catalog; the browser signs in as a
user who holds some achievements, checks what each state shows, and saves a
screenshot to ``test-output/achievements-<backend>.png``. With
``HERO_UPDATE_DOCS_SCREENSHOT=1`` the SQLite run also refreshes the one in the
docs (``docs/images/achievements-page.png``).

Chromium is Debian's ``chromium`` package (``HERO_CHROMIUM`` names another
binary); Playwright never downloads a browser here. Without Chromium or
Playwright the test is skipped, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from freezegun import freeze_time

import hero
from hero import AchievementBase, AchievementUnlocked
from hero.projections.catalog import sync_catalog
from tests.conftest import Backend

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


# The demo catalog --------------------------------------------------------------


class Demo(AchievementBase):
    abstract = True

    def unlock(self, **state: Any) -> Any:
        return AchievementUnlocked(level=state.get("level", 1))


class FirstPost(Demo):
    id = "demo_first_post"
    title = "First post"
    description = "Wrote your first post"
    events = ["demo_first_post"]


class Conversationalist(Demo):
    id = "demo_conversationalist"
    title = "Conversationalist"
    description = "Comments on other people's posts"
    events = ["demo_conversationalist"]


class EarlyAdopter(Demo):
    id = "demo_early_adopter"
    title = "Early adopter"
    description = "Joined in the first month"
    events = ["demo_early_adopter"]


class Bookworm(Demo):
    id = "demo_bookworm"
    title = "Bookworm"
    description = "Read ten chapters"
    steps = 10
    events = ["demo_bookworm"]

    def unlock(self, **state: Any) -> Any:
        from hero import AchievementProgress

        return AchievementProgress(steps=state["chapters"])


class Photographer(Demo):
    id = "demo_photographer"
    title = "Photographer"
    description = "Uploaded a profile photo"
    events = ["demo_photographer"]


class NightOwl(Demo):
    id = "demo_night_owl"
    title = "Night owl"
    description = "Posted between 2 and 4 in the morning"
    secret = True
    events = ["demo_night_owl"]


class HiddenGem(Demo):
    id = "demo_hidden_gem"
    title = "Hidden gem"
    description = "Found the room behind the waterfall"
    invisible = True
    events = ["demo_hidden_gem"]


DEMO = [
    FirstPost,
    Conversationalist,
    EarlyAdopter,
    Bookworm,
    Photographer,
    NightOwl,
    HiddenGem,
]


@pytest.fixture
def demo_catalog(backend: Backend, isolated_registry: Any) -> Iterator[None]:
    """Only the demo achievements are listed (the test app's are retired)."""
    for achievement_id in [a.id for a in isolated_registry]:
        isolated_registry.remove(achievement_id)
    for cls in DEMO:
        hero.achievements.register(cls)
    sync_catalog(backend.alias)
    yield


def demo_data(make_user: Any) -> Any:
    """ann: three unlocked, a third of the way through Bookworm; others hold
    the secret and invisible ones, which ann has not found."""
    unlock = hero.achievements.unlock
    ann, bob, cid = make_user("ann"), make_user("bob"), make_user("cid")
    with freeze_time("2026-02-03 18:30"):
        unlock("demo_early_adopter", user=ann, level=4)
    with freeze_time("2026-02-10 09:15"):
        unlock("demo_first_post", user=ann)
    with freeze_time("2026-03-14 20:05"):
        unlock("demo_conversationalist", user=ann, level=3)
    unlock("demo_bookworm", user=ann, chapters=4)
    for user in (bob, cid):
        unlock("demo_first_post", user=user)
        unlock("demo_night_owl", user=user)
        unlock("demo_hidden_gem", user=user)
    return ann


# The test --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_achievements_page_in_chromium(
    backend: Backend,
    make_user: Any,
    demo_catalog: None,
    live_server: Any,
    chromium_path: str,
) -> None:
    from playwright.sync_api import sync_playwright

    # Arrange: the data, and ann's session cookie (all database work happens
    # before Playwright starts its event loop in this thread).
    ann = demo_data(make_user)
    client = Client()
    client.force_login(ann)
    session = client.cookies["sessionid"].value
    url = f"{live_server.url}/achievements/"
    OUTPUT.mkdir(exist_ok=True)
    screenshot = OUTPUT / f"achievements-{backend.name}.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            # Short: the full-page screenshot grows to fit, with no empty space.
            context = browser.new_context(viewport={"width": 1100, "height": 560})
            context.add_cookies(
                [{"name": "sessionid", "value": session, "url": live_server.url}]
            )
            page = context.new_page()
            page.set_default_timeout(15_000)
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))

            # Act: open the page.
            response = page.goto(url)
            page.wait_for_load_state("networkidle")

            # Assert: the page, its stylesheet and every image loaded.
            assert response is not None and response.status == 200
            assert page.title() == "Your achievements"
            assert page.locator(".hero-summary").inner_text().startswith("3 of 6")
            assert (
                page.evaluate(
                    "getComputedStyle(document.querySelector('.hero-grid')).display"
                )
                == "grid"
            )
            every_image_loaded = (
                "Array.from(document.images).every(i => i.complete && i.naturalWidth)"
            )
            assert page.evaluate(every_image_loaded)
            assert all(u.startswith(live_server.url) for u in requested), (
                requested
            )  # no CDN

            # Unlocked: level name, date and the unlocked image.
            talk = page.locator('[data-achievement="demo_conversationalist"]')
            assert "Gold" in talk.inner_text() and "14 Mar 2026" in talk.inner_text()
            assert (
                talk.locator("img")
                .get_attribute("src")
                .endswith("default-unlocked.jpg")
            )
            # Locked: title, description, locked image, and the progress bar.
            book = page.locator('[data-achievement="demo_bookworm"]')
            assert "hero-locked" in book.get_attribute("class")
            assert (
                "Read ten chapters" in book.inner_text()
                and "4 / 10" in book.inner_text()
            )
            assert book.locator("progress").evaluate("p => [p.value, p.max]") == [4, 10]
            assert (
                book.locator("img").get_attribute("src").endswith("default-locked.jpg")
            )
            photo = page.locator('[data-achievement="demo_photographer"]')
            assert "Locked" in photo.inner_text()
            # Secret: a placeholder with the secret image; invisible: nothing.
            secret = page.locator(".hero-secret")
            assert secret.count() == 1
            assert secret.inner_text().strip() == "Secret achievement"
            assert (
                secret.locator("img")
                .get_attribute("src")
                .endswith("default-secret.jpg")
            )
            text = page.locator("body").inner_text()
            for hidden in ("Night owl", "2 and 4", "Hidden gem", "waterfall"):
                assert hidden not in text
            assert (
                "demo_night_owl" not in page.content()
                and "demo_hidden_gem" not in page.content()
            )
            # The notice of new unlocks.
            assert (
                "You unlocked Conversationalist (Gold)"
                in page.locator(".hero-notices").inner_text()
            )

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

            # The details page of an unlocked achievement.
            page.set_viewport_size({"width": 1100, "height": 560})
            talk_link = page.get_by_role("link", name="Conversationalist")
            talk_link.click()
            page.wait_for_load_state("networkidle")
            assert page.locator("h1").inner_text() == "Conversationalist"
            assert page.locator("tr.hero-held").inner_text().startswith("Gold")
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

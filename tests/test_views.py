"""hero's default pages and JSON endpoints: what each visitor sees, and what not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from freezegun import freeze_time

import hero
from hero.catalog import FIELDS as CATALOG_FIELDS
from hero.models import Achievement, LedgerEntry, NoticeCursor
from tests.conftest import Backend

unlock = hero.achievements.unlock

#: Text of the secret (night_owl) and invisible (hidden_gem) achievements of
#: the test app: none of it may reach anyone who has not unlocked them.
SECRET_TEXTS = ("Night owl", "night_owl", "Posted between 2 and 4")
INVISIBLE_TEXTS = ("Hidden gem", "hidden_gem", "waterfall")
STATIC = "/static/achievements/images/"


def showcase(make_user: Any) -> Any:
    """ann holds Points at Gold and 50 comments, has read two of Bookworm's five
    chapters, and holds neither the secret nor the invisible achievement."""
    ann = make_user("ann")
    with freeze_time("2026-03-01 09:00"):
        unlock("score_changed", user=ann, points=1_000)
    with freeze_time("2026-03-02 09:00"):
        unlock("points_awarded", user=ann)
    unlock("chapter_read", user=ann, chapters=2)
    return ann


def listed_count() -> int:
    """Achievements listed for someone holding no invisible one."""
    return Achievement.objects.listed().exclude(invisible=True).count()


def assert_hidden(text: str, *texts: str) -> None:
    for secret in texts:
        assert secret not in text, f"{secret!r} leaked"


def card_of(html: str, achievement_id: str) -> str:
    """The HTML of one achievement's card in a listing."""
    match = re.search(
        rf'<li [^>]*data-achievement="{achievement_id}".*?</li>', html, re.S
    )
    assert match, f"no card for {achievement_id}"
    return match.group(0)


def secret_cards(html: str) -> list[str]:
    return re.findall(r'<li class="hero-card hero-secret.*?</li>', html, re.S)


def signed_in(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def public_profiles(settings: Any) -> None:
    """Profiles found by anyone, by username and by pk (both off by default)."""
    settings.HERO_PUBLIC_PROFILES = True
    settings.HERO_PROFILES_BY_PK = True


# The signed-in user's page ---------------------------------------------------


@pytest.mark.django_db
def test_own_page_shows_unlocked_locked_and_secret_and_hides_invisible(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)

    response = signed_in(ann).get(reverse("hero:mine"))

    assert response.status_code == 200
    html = response.content.decode()
    # Summary: two unlocked of everything listed (the invisible one is not).
    assert f"2 of {listed_count()}</strong> unlocked" in html
    points = card_of(html, "points")
    assert "hero-unlocked" in points and "Gold" in points and "1 Mar 2026" in points
    assert f'src="{STATIC}default-unlocked.jpg"' in points
    bookworm = card_of(html, "bookworm")
    assert "hero-locked" in bookworm and "Read five chapters" in bookworm
    assert '<progress value="2" max="5">' in bookworm and "2 / 5" in bookworm
    assert f'src="{STATIC}default-locked.jpg"' in bookworm
    [secret] = secret_cards(html)
    assert (
        "Secret achievement" in secret and f'src="{STATIC}default-secret.jpg"' in secret
    )
    assert "<a " not in secret  # no link to the details either
    assert_hidden(html, *SECRET_TEXTS, *INVISIBLE_TEXTS)
    # Unlocked first, latest first; the secret placeholder last.
    order = re.findall(r'data-achievement="([^"]+)"', html)
    assert order[:2] == ["comments_50", "points"] and "bookworm" in order
    assert html.rindex("hero-secret") > html.rindex('data-achievement="')


@pytest.mark.skipif(
    "steps" not in CATALOG_FIELDS,
    reason="the catalog does not record an achievement's steps yet "
    "(hero.catalog.FIELDS has no 'steps')",
)
@pytest.mark.django_db
def test_a_locked_achievement_with_steps_shows_an_empty_bar_before_any_progress(
    backend: Backend, make_user: Any
) -> None:
    # dee has never read a chapter: no progress row, but Bookworm has 5 steps.
    dee = make_user("dee")

    html = signed_in(dee).get(reverse("hero:mine")).content.decode()

    bookworm = card_of(html, "bookworm")
    assert '<progress value="0" max="5">' in bookworm and "0 / 5" in bookworm


@pytest.mark.django_db
def test_unlocking_reveals_secret_and_invisible_achievements(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    unlock("score_changed", user=ann, night=True)
    unlock("gem_found", user=ann)

    html = signed_in(ann).get(reverse("hero:mine")).content.decode()

    assert "Night owl" in card_of(html, "night_owl") and "hero-unlocked" in card_of(
        html, "night_owl"
    )
    assert "Found the room behind the waterfall" in card_of(html, "hidden_gem")
    assert secret_cards(html) == []
    assert f"4 of {listed_count() + 1}</strong> unlocked" in html


@pytest.mark.django_db
def test_own_page_asks_anonymous_visitors_to_sign_in(backend: Backend) -> None:
    response = Client().get(reverse("hero:mine"))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/achievements/")


# Another user's page -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("by", ["pk", "username"])
def test_public_page_hides_what_the_visitor_has_not_unlocked(
    backend: Backend, make_user: Any, public_profiles: None, by: str
) -> None:
    ann = showcase(make_user)
    unlock("score_changed", user=ann, night=True)  # secret, held by ann
    unlock("gem_found", user=ann)  # invisible, held by ann
    bob = make_user("bob")
    url = (
        reverse("hero:user", args=[ann.pk])
        if by == "pk"
        else reverse("hero:user-by-username", args=[ann.username])
    )

    for visitor in (Client(), signed_in(bob)):
        response = visitor.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert "ann\u2019s achievements" in html
        assert "Gold" in card_of(html, "points")
        # ann's secret achievement shows as unlocked, but as a placeholder;
        # her invisible one is not listed at all.
        [secret] = secret_cards(html)
        assert "hero-held" in secret and "Secret achievement" in secret
        assert_hidden(html, *SECRET_TEXTS, *INVISIBLE_TEXTS)
        assert f"3 of {listed_count()}</strong> unlocked" in html
        assert "hero-notices" not in html  # ann's notices are hers alone

    # Once bob has unlocked the secret one himself, it is revealed to him.
    unlock("score_changed", user=bob, night=True)
    html = signed_in(bob).get(url).content.decode()
    assert "Night owl" in card_of(html, "night_owl")
    assert_hidden(html, *INVISIBLE_TEXTS)


@pytest.mark.django_db
def test_unknown_or_inactive_users_are_not_found(
    backend: Backend, make_user: Any, django_user_model: Any, public_profiles: None
) -> None:
    gone = make_user("gone")
    django_user_model.objects.filter(pk=gone.pk).update(is_active=False)
    client = Client()

    for url in [
        reverse("hero:user", args=["999999"]),
        reverse("hero:user", args=["not-a-number"]),
        reverse("hero:user-by-username", args=["nobody"]),
        reverse("hero:user", args=[gone.pk]),
        reverse("hero:api-user", args=["not-a-number"]),
        reverse("hero:api-user-by-username", args=["nobody"]),
    ]:
        response = client.get(url)
        assert response.status_code == 404, url


def profile_urls(user: Any) -> dict[str, str]:
    """A user's page and JSON, by pk and by username."""
    return {
        "page by pk": reverse("hero:user", args=[user.pk]),
        "page by username": reverse("hero:user-by-username", args=[user.username]),
        "JSON by pk": reverse("hero:api-user", args=[user.pk]),
        "JSON by username": reverse("hero:api-user-by-username", args=[user.username]),
    }


@pytest.mark.django_db
def test_another_users_achievements_are_private_by_default(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: ann and her achievements; bob, signed in; and someone anonymous.
    ann, bob = showcase(make_user), make_user("bob")
    nobody = SimpleNamespace(pk=99_999_999, username="no-such-user")

    for visitor in (Client(), signed_in(bob)):
        for name, url in profile_urls(ann).items():
            # Act
            response = visitor.get(url)
            missing = visitor.get(profile_urls(nobody)[name])

            # Assert: a 404, the same as for a user who does not exist, so that
            # a private profile does not even tell that ann has an account.
            assert response.status_code == 404, name
            assert response.content == missing.content, name
            assert_hidden(response.content.decode(), "ann", "Points")


@pytest.mark.django_db
def test_a_user_always_sees_their_own_page_and_json(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = signed_in(ann)

    for name, url in profile_urls(ann).items():
        response = client.get(url)
        assert response.status_code == 200, name
        assert "Points" in response.content.decode(), name
    html = client.get(profile_urls(ann)["page by username"]).content.decode()
    assert "Your achievements" in html and "hero-notices" in html


@pytest.mark.django_db
def test_public_profiles_are_found_by_username_and_by_pk_only_when_asked(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    ann = showcase(make_user)
    urls = profile_urls(ann)

    def statuses() -> dict[str, int]:
        return {name: Client().get(url).status_code for name, url in urls.items()}

    settings.HERO_PUBLIC_PROFILES = True
    assert statuses() == {
        "page by pk": 404,
        "page by username": 200,
        "JSON by pk": 404,
        "JSON by username": 200,
    }
    settings.HERO_PROFILES_BY_PK = True
    assert set(statuses().values()) == {200}
    # By pk alone, without public profiles, opens nothing.
    settings.HERO_PUBLIC_PROFILES = False
    assert set(statuses().values()) == {404}


# Achievement details ---------------------------------------------------------


@pytest.mark.django_db
def test_detail_shows_the_ladder_with_holders_and_rarity(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)  # Gold
    bob, cid, dee = make_user("bob"), make_user("cid"), make_user("dee")
    unlock("score_changed", user=bob, points=10)  # Bronze
    unlock("score_changed", user=cid, points=10_000)  # Diamond

    response = signed_in(ann).get(reverse("hero:detail", args=["points"]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Points</h1>" in html and "Collect points" in html
    assert "Held by 3 of 4 users" in html
    rows = dict(re.findall(r'level-\d">(\w+)</span></th>\s*<td>(\d+)</td>', html))
    assert rows == {"Bronze": "1", "Silver": "0", "Gold": "1", "Diamond": "1"}
    # Rarity counts holders at the level or above: Bronze 3 of 4, Gold 2, Diamond 1.
    assert re.findall(r"</progress> ([\d.]+)%", html) == [
        "75.0",
        "50.0",
        "50.0",
        "25.0",
    ]
    assert re.search(
        r'<tr class="hero-held">\s*<th scope="row">'
        r'<span class="hero-level hero-level-3">Gold',
        html,
    )
    assert f'src="{STATIC}default-unlocked.jpg"' in html
    # dee holds nothing: the locked image, no level of hers.
    html = signed_in(dee).get(reverse("hero:detail", args=["points"])).content.decode()
    assert f'src="{STATIC}default-locked.jpg"' in html and "You hold" not in html


@pytest.mark.django_db
def test_secret_and_invisible_details_only_for_those_who_unlocked_them(
    backend: Backend, make_user: Any
) -> None:
    ann, bob = showcase(make_user), make_user("bob")
    unlock("score_changed", user=ann, night=True)
    unlock("gem_found", user=ann)

    for achievement_id in ("night_owl", "hidden_gem"):
        for url in (
            reverse("hero:detail", args=[achievement_id]),
            reverse("hero:api-detail", args=[achievement_id]),
        ):
            for visitor in (Client(), signed_in(bob)):
                response = visitor.get(url)
                assert response.status_code == 404, url
                assert_hidden(
                    response.content.decode(), *SECRET_TEXTS, *INVISIBLE_TEXTS
                )
            assert signed_in(ann).get(url).status_code == 200
    assert (
        "Hidden gem"
        in signed_in(ann)
        .get(reverse("hero:detail", args=["hidden_gem"]))
        .content.decode()
    )


@pytest.mark.django_db
def test_unknown_achievements_are_not_found(backend: Backend, make_user: Any) -> None:
    client = signed_in(make_user())

    for url in [
        reverse("hero:detail", args=["no_such"]),
        reverse("hero:api-detail", args=["no_such"]),
    ]:
        response = client.get(url)
        assert response.status_code == 404
    assert client.get(reverse("hero:api-detail", args=["no_such"])).json() == {
        "error": "No such achievement."
    }


@pytest.mark.django_db
def test_a_retired_achievement_is_not_listed_but_its_details_remain(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    Achievement.objects.filter(pk="points").update(retired=True)
    client = signed_in(ann)

    html = client.get(reverse("hero:mine")).content.decode()
    assert 'data-achievement="points"' not in html
    detail = client.get(reverse("hero:detail", args=["points"])).content.decode()
    assert "No longer awarded." in detail and "You hold" in detail


# JSON ------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_of_own_achievements(backend: Backend, make_user: Any) -> None:
    ann = showcase(make_user)

    response = signed_in(ann).get(reverse("hero:api-mine"))

    assert (
        response.status_code == 200 and response["Content-Type"] == "application/json"
    )
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["user"] == {"id": ann.pk, "username": "ann"}
    assert (data["unlocked"], data["listed"]) == (2, listed_count())
    by_id = {a["id"]: a for a in data["achievements"]}
    assert by_id["points"] == {
        "id": "points",
        "state": "unlocked",
        "unlocked": True,
        "title": "Points",
        "description": "Collect points",
        "image": f"http://testserver{STATIC}default-unlocked.jpg",
        "level": 3,
        "level_name": "Gold",
        "unlocked_at": "2026-03-01T09:00:00Z",
        "times": 1,
        "progress": None,
        "url": "http://testserver/achievements/points/",
    }
    assert by_id["bookworm"]["state"] == "locked"
    assert by_id["bookworm"]["progress"] == {"steps": 2, "total": 5, "percent": 40.0}
    assert by_id[None] == {
        "id": None,
        "state": "secret",
        "unlocked": False,
        "title": None,
        "description": None,
        "image": f"http://testserver{STATIC}default-secret.jpg",
        "level": None,
        "level_name": None,
        "unlocked_at": None,
        "times": None,
        "progress": None,
        "url": None,
    }
    assert_hidden(response.content.decode(), *SECRET_TEXTS, *INVISIBLE_TEXTS)


@pytest.mark.django_db
def test_json_of_another_user_and_of_an_achievement(
    backend: Backend, make_user: Any, public_profiles: None
) -> None:
    ann = showcase(make_user)
    unlock("score_changed", user=ann, night=True)
    unlock("gem_found", user=ann)
    make_user("bob")

    response = Client().get(reverse("hero:api-user-by-username", args=["ann"]))
    assert response.status_code == 200
    data = response.json()
    assert [a["state"] for a in data["achievements"]].count("secret") == 1
    assert data["unlocked"] == 3
    assert_hidden(response.content.decode(), *SECRET_TEXTS, *INVISIBLE_TEXTS)
    assert Client().get(reverse("hero:api-user", args=[ann.pk])).json() == data

    detail = Client().get(reverse("hero:api-detail", args=["points"])).json()
    assert detail["title"] == "Points" and detail["unlocked"] is False
    assert detail["holders"] == 1 and detail["users"] == 2
    assert detail["levels"][2] == {
        "level": 3,
        "name": "Gold",
        "holders": 1,
        "holders_at_or_above": 1,
        "percent": 50.0,
    }


@pytest.mark.django_db
def test_json_errors_are_json(backend: Backend, make_user: Any) -> None:
    anonymous = Client()

    response = anonymous.get(reverse("hero:api-mine"))
    assert (response.status_code, response.json()) == (
        403,
        {"error": "Sign in to see this."},
    )
    response = signed_in(make_user()).post(reverse("hero:api-mine"))
    assert response.status_code == 405 and "error" in response.json()


# Notices of new unlocks ------------------------------------------------------


@pytest.mark.django_db
def test_notices_show_once_and_marking_them_seen_needs_a_csrf_post(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = signed_in(ann, enforce_csrf_checks=True)
    mine = reverse("hero:mine")

    html = client.get(mine).content.decode()
    assert "You unlocked <strong>Points</strong> (Gold)" in html
    assert "You unlocked <strong>50 comments</strong> (Bronze)" in html
    # Without the CSRF token, or by GET, nothing changes.
    assert client.post(reverse("hero:notices-seen")).status_code == 403
    assert client.get(reverse("hero:notices-seen")).status_code == 405
    assert not NoticeCursor.objects.exists()

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    upto = re.search(r'name="upto" value="(\d+)"', html).group(1)
    response = client.post(
        reverse("hero:notices-seen"),
        {"csrfmiddlewaretoken": token, "upto": upto, "next": "https://evil.example/"},
    )

    assert (response.status_code, response["Location"]) == (
        302,
        mine,
    )  # not evil.example
    assert "hero-notices" not in client.get(mine).content.decode()
    # A later unlock is news again.
    unlock("score_changed", user=ann, night=True)
    assert (
        "You unlocked <strong>Night owl</strong>" in client.get(mine).content.decode()
    )


@pytest.mark.django_db
def test_marking_seen_never_skips_later_notices_nor_goes_back(
    backend: Backend, make_user: Any
) -> None:
    from hero.visibility import mark_notices_seen, notices

    ann = showcase(make_user)
    first = (
        LedgerEntry.objects.filter(user=ann, kind="unlocked")
        .order_by("position")
        .first()
    )

    assert mark_notices_seen(ann, upto=first.position) == first.position
    assert [n.achievement_id for n in notices(ann)] == ["comments_50"]
    assert mark_notices_seen(ann, upto=10**12) == mark_notices_seen(ann)  # clamped
    latest = mark_notices_seen(ann)
    assert mark_notices_seen(ann, upto=first.position) == latest  # never backwards
    assert notices(ann) == []


@pytest.mark.django_db
def test_notices_json(backend: Backend, make_user: Any) -> None:
    ann = showcase(make_user)
    unlock("score_changed", user=ann, points=10_000)  # upgrade to Diamond
    client = signed_in(ann)

    data = client.get(reverse("hero:api-notices")).json()

    assert [(n["id"], n["level_name"], n["upgraded"]) for n in data["notices"]] == [
        ("points", "Diamond", True),
        ("comments_50", "Bronze", False),
    ]
    response = client.post(reverse("hero:api-notices"), {"upto": data["upto"]})
    assert response.json() == {"seen_position": data["upto"]}
    assert client.get(reverse("hero:api-notices")).json() == {
        "notices": [],
        "upto": None,
    }
    assert Client().get(reverse("hero:api-notices")).status_code == 403
    # Marking seen through JSON needs the CSRF token too.
    unlock("score_changed", user=ann, night=True)
    strict = signed_in(ann, enforce_csrf_checks=True)
    assert strict.post(reverse("hero:api-notices"), {}).status_code == 403
    assert len(strict.get(reverse("hero:api-notices")).json()["notices"]) == 1


@pytest.mark.django_db
def test_a_revoked_achievement_is_no_news(backend: Backend, make_user: Any) -> None:
    from hero.visibility import notices

    ann = showcase(make_user)
    hero.achievements.revoke(ann, "points", reason="test")

    assert [n.achievement_id for n in notices(ann)] == ["comments_50"]


# Images ----------------------------------------------------------------------


def test_default_images_are_shipped_as_static_files() -> None:
    for name in ("locked", "unlocked", "secret", "hidden"):
        found = finders.find(f"achievements/images/default-{name}.jpg")
        assert found, name
        data = Path(found).read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and len(data) > 1000  # a real JPEG
    assert finders.find("hero/hero.css")


@pytest.mark.django_db
def test_image_overrides_per_achievement_and_by_setting(
    backend: Backend, make_user: Any, isolated_registry: Any, settings: Any
) -> None:
    from hero.catalog import sync_catalog

    @hero.achievements.register
    class Painted(hero.AchievementBase):
        id = "painted"
        title = "Painted"
        image_locked = "art/painted-locked.png"
        image_unlocked = "https://cdn.example/painted.png"
        events = ["painted"]

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1)

    sync_catalog(backend.alias)
    settings.ACHIEVEMENT_IMAGE_SECRET = "site/mystery.svg"
    ann = make_user("ann")
    client = signed_in(ann)

    html = client.get(reverse("hero:mine")).content.decode()
    assert 'src="/static/art/painted-locked.png"' in card_of(html, "painted")
    assert 'src="/static/site/mystery.svg"' in secret_cards(html)[0]
    unlock("painted", user=ann)
    html = client.get(reverse("hero:mine")).content.decode()
    assert 'src="https://cdn.example/painted.png"' in card_of(html, "painted")


@pytest.mark.django_db
def test_no_surface_shows_a_hidden_achievements_own_images(
    backend: Backend, make_user: Any, isolated_registry: Any, public_profiles: None
) -> None:
    from django.template import Context, Template
    from django.test import RequestFactory

    from hero.catalog import sync_catalog

    def images(name: str) -> dict[str, str]:
        return {
            f"image_{kind}": f"leak/{name}-{kind}.png"
            for kind in ("locked", "unlocked", "secret")
        }

    @hero.achievements.register
    class Vault(hero.AchievementBase):
        id, title, secret, events = "vault", "Vault", True, ["vault"]
        locals().update(images("vault"))

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1)

    @hero.achievements.register
    class Ghost(hero.AchievementBase):
        id, title, invisible, events = "ghost", "Ghost", True, ["ghost"]
        locals().update(images("ghost"))

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1)

    sync_catalog(backend.alias)
    ann, bob = showcase(make_user), make_user("bob")
    unlock("vault", user=ann)
    unlock("ghost", user=ann)
    bob_client = signed_in(bob)
    request = RequestFactory().get("/")
    request.user = bob
    tags = Template(
        "{% load hero_tags %}{% hero_achievement_list ann %}"
        "{% hero_image 'vault' ann %}{% hero_image 'ghost' ann %}"
        "{% hero_image 'vault' bob %}{% hero_image 'ghost' bob %}"
    ).render(Context({"request": request, "ann": ann, "bob": bob}))

    surfaces = {
        "own page": bob_client.get(reverse("hero:mine")),
        "ann's page": bob_client.get(reverse("hero:user", args=[ann.pk])),
        "ann's JSON": bob_client.get(reverse("hero:api-user", args=[ann.pk])),
        "own JSON": bob_client.get(reverse("hero:api-mine")),
        "vault": bob_client.get(reverse("hero:detail", args=["vault"])),
        "vault JSON": bob_client.get(reverse("hero:api-detail", args=["vault"])),
        "ghost": bob_client.get(reverse("hero:detail", args=["ghost"])),
        "notices": bob_client.get(reverse("hero:api-notices")),
    }
    texts = {name: response.content.decode() for name, response in surfaces.items()}
    texts["tags"] = tags

    for name, text in texts.items():
        for leak in ("vault-locked", "vault-unlocked", "ghost-", "Vault", "Ghost"):
            assert leak not in text, f"{leak} leaked on {name}"
    # What a secret achievement shows instead is its secret image.
    assert "/static/leak/vault-secret.png" in texts["ann's page"]
    assert "/static/leak/vault-secret.png" in texts["own page"]
    # ann herself sees her own images.
    html = signed_in(ann).get(reverse("hero:mine")).content.decode()
    assert "leak/vault-unlocked.png" in html and "leak/ghost-unlocked.png" in html


@pytest.mark.django_db
def test_odd_input_is_a_404_or_ignored_never_a_500(
    backend: Backend, make_user: Any, public_profiles: None
) -> None:
    ann = showcase(make_user)
    client = signed_in(ann)
    client.raise_request_exception = False

    for path in [
        "/achievements/users/99999999999999999999999/",
        "/achievements/users/-1/",
        "/achievements/users/%C3%A9/",
        "/achievements/users/@%00/",
        "/achievements/api/users/1.5/",
        "/achievements/" + "x" * 300 + "/",
        "/achievements/api/achievements/%27%20OR%201=1/",
        "/achievements/a%00b/",
        "/achievements/api/achievements/%00/",
    ]:
        assert client.get(path).status_code == 404, path
    for upto in ("abc", "-5", "", "1e9"):
        response = client.post(reverse("hero:notices-seen"), {"upto": upto})
        assert response.status_code == 302, upto


# Escaping --------------------------------------------------------------------


@pytest.mark.django_db
def test_titles_and_descriptions_are_escaped(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    from hero.catalog import sync_catalog

    @hero.achievements.register
    class Sneaky(hero.AchievementBase):
        id = "sneaky"
        title = "<script>alert('title')</script>"
        description = '<img src=x onerror="alert(1)">'
        events = ["sneak"]

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1)

    sync_catalog(backend.alias)
    ann = make_user("ann")
    unlock("sneak", user=ann)
    client = signed_in(ann)

    for url in (reverse("hero:mine"), reverse("hero:detail", args=["sneaky"])):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in html
    data = json.loads(client.get(reverse("hero:api-detail", args=["sneaky"])).content)
    assert (
        data["title"] == "<script>alert('title')</script>"
    )  # JSON carries data, not HTML


# Overriding templates --------------------------------------------------------


@pytest.mark.django_db
def test_a_site_overrides_the_base_and_any_other_template(
    backend: Backend, make_user: Any, settings: Any, tmp_path: Path
) -> None:
    # The site's own base, and hero/base.html on top of it as the docs show.
    (tmp_path / "hero" / "includes").mkdir(parents=True)
    (tmp_path / "base.html").write_text(
        "<html><body><nav>My site</nav>{% block content %}{% endblock %}</body></html>"
    )
    (tmp_path / "hero" / "base.html").write_text(
        '{% extends "base.html" %}{% load static %}'
        "{% block content %}"
        '<link rel="stylesheet" href="{% static \'hero/hero.css\' %}">'
        '<div class="hero">{% block hero_content %}{% endblock %}</div>{% endblock %}'
    )
    (tmp_path / "hero" / "includes" / "card.html").write_text(
        '<li class="my-card">{{ card.display_title }}</li>'
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    ann = showcase(make_user)

    html = signed_in(ann).get(reverse("hero:mine")).content.decode()

    assert html.startswith("<html><body><nav>My site</nav>")
    assert '<link rel="stylesheet" href="/static/hero/hero.css">' in html
    assert '<li class="my-card">Points</li>' in html
    assert '<li class="my-card">Secret achievement</li>' in html
    assert "hero-card" not in html


# The documented JSON ---------------------------------------------------------


def shape(value: Any) -> Any:
    """The keys of a JSON value, all the way down (a list by its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


@pytest.mark.django_db
def test_the_json_examples_in_the_docs_match_the_responses(
    backend: Backend, make_user: Any
) -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "guide" / "views.md"
    blocks = re.findall(r"```json\n(.*?)\n```", page.read_text(), re.S)
    mine_doc, detail_doc, notices_doc = (json.loads(block) for block in blocks)
    ann = showcase(make_user)
    unlock("score_changed", user=ann, points=10_000)
    client = signed_in(ann)

    mine = client.get(reverse("hero:api-mine")).json()
    detail = client.get(reverse("hero:api-detail", args=["points"])).json()
    notices = client.get(reverse("hero:api-notices")).json()

    assert shape(mine) == shape(mine_doc)
    real = {a["id"]: a for a in mine["achievements"]}  # the secret one's id is None
    for documented in mine_doc["achievements"]:
        assert shape(real[documented["id"]]) == shape(documented)
        assert real[documented["id"]]["state"] == documented["state"]
    assert shape(detail) == shape(detail_doc)
    assert shape(notices) == shape(notices_doc)


@pytest.mark.django_db
def test_the_docs_private_urlconf_works_with_heros_templates(
    backend: Backend, make_user: Any, settings: Any
) -> None:
    import types

    page = Path(__file__).resolve().parent.parent / "docs" / "guide" / "views.md"
    [sample] = [
        block
        for block in re.findall(r"```python\n(.*?)\n```", page.read_text(), re.S)
        if "private_hero" in block
    ]
    urlconf = types.ModuleType("private_urlconf")
    exec(sample, urlconf.__dict__)
    settings.ROOT_URLCONF = urlconf
    ann = showcase(make_user)

    own = signed_in(ann).get("/achievements/")
    detail = signed_in(ann).get("/achievements/points/")
    anonymous = Client().get("/achievements/points/")

    assert (
        own.status_code == 200
        and 'href="/achievements/points/"' in own.content.decode()
    )
    assert detail.status_code == 200
    assert anonymous.status_code == 302  # to the sign-in page
    assert Client().get(f"/achievements/users/{ann.pk}/").status_code == 404

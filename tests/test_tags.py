"""``{% load hero_tags %}``: a site's own pages show achievements by the same rules."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.middleware.csrf import get_token
from django.template import Context, Template
from django.test import RequestFactory

import hero
from tests.conftest import Backend
from tests.test_views import INVISIBLE_TEXTS, SECRET_TEXTS, assert_hidden, showcase

unlock = hero.achievements.unlock
IMAGES = "/static/achievements/images/"


def render(source: str, viewer: Any = None, **context: Any) -> str:
    """Render with a request by ``viewer`` in the context (none if viewer is None)."""
    if viewer is not None:
        request = RequestFactory().get("/somewhere/?page=2")
        request.user = viewer
        context.update(request=request, csrf_token=get_token(request))
    return Template("{% load hero_tags %}" + source).render(Context(context))


@pytest.mark.django_db
def test_hero_achievements_lists_by_the_viewers_rules(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    unlock("score_changed", user=ann, night=True)
    unlock("gem_found", user=ann)
    bob = make_user("bob")
    source = (
        "{% hero_achievements subject as listing %}"
        "{{ listing.unlocked }}/{{ listing.listed }}"
        "{% for card in listing.cards %}"
        " {{ card.state }}:{{ card.display_title }}"
        "{% endfor %}"
    )

    own = render(source, ann, subject=ann)
    seen_by_bob = render(source, bob, subject=ann)
    seen_by_anonymous = render(source, AnonymousUser(), subject=ann)

    assert (
        own.startswith("4/")
        and "unlocked:Night owl" in own
        and "unlocked:Hidden gem" in own
    )
    for text in (seen_by_bob, seen_by_anonymous):
        assert text.startswith("3/") and "secret:Secret achievement" in text
        assert_hidden(text, *SECRET_TEXTS, *INVISIBLE_TEXTS)
    assert render(source, ann, subject=AnonymousUser()) == "0/0"


@pytest.mark.django_db
def test_hero_achievement_list_renders_the_cards(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)

    html = render("{% hero_achievement_list subject %}", ann, subject=ann)

    assert 'data-achievement="points"' in html and "Secret achievement" in html
    assert_hidden(html, *SECRET_TEXTS, *INVISIBLE_TEXTS)


@pytest.mark.django_db
def test_hero_image_picks_unlocked_locked_or_secret(
    backend: Backend, make_user: Any
) -> None:
    ann, bob = showcase(make_user), make_user("bob")
    image = "{% hero_image achievement subject %}"

    assert (
        render(image, ann, achievement="points", subject=ann)
        == f"{IMAGES}default-unlocked.jpg"
    )
    assert (
        render(image, ann, achievement="bookworm", subject=ann)
        == f"{IMAGES}default-locked.jpg"
    )
    assert (
        render(image, ann, achievement="night_owl", subject=ann)
        == f"{IMAGES}default-secret.jpg"
    )
    assert render(image, ann, achievement="hidden_gem", subject=ann) == ""
    assert render(image, ann, achievement="no_such", subject=ann) == ""

    # ann unlocks the secret one: she sees its unlocked image; bob, who has not
    # unlocked it, sees the secret one.
    unlock("score_changed", user=ann, night=True)
    unlock("gem_found", user=ann)
    assert (
        render(image, ann, achievement="night_owl", subject=ann)
        == f"{IMAGES}default-unlocked.jpg"
    )
    assert (
        render(image, bob, achievement="night_owl", subject=ann)
        == f"{IMAGES}default-secret.jpg"
    )
    assert render(image, bob, achievement="hidden_gem", subject=ann) == ""
    # Without a request (an e-mail to ann), ann is the viewer.
    assert (
        render(image, achievement="hidden_gem", subject=ann)
        == f"{IMAGES}default-unlocked.jpg"
    )


@pytest.mark.django_db
def test_hero_progress_and_its_bar(backend: Backend, make_user: Any) -> None:
    ann = showcase(make_user)

    text = render(
        "{% hero_progress 'bookworm' subject as p %}"
        "{{ p.steps }}/{{ p.total }} {{ p.percent }}",
        ann,
        subject=ann,
    )
    bar = render("{% hero_progress_bar 'bookworm' subject %}", ann, subject=ann)

    assert text == "2/5 40.0"
    assert '<progress value="2" max="5">40%</progress>' in bar
    for achievement in (
        "points",
        "night_owl",
        "hidden_gem",
        "no_such",
    ):  # unlocked, hidden, unknown
        assert (
            render(
                f"{{% hero_progress '{achievement}' subject as p %}}{{{{ p }}}}",
                ann,
                subject=ann,
            )
            == "None"
        )
    unlock("chapter_read", user=ann, chapters=5)
    assert "<progress" not in render(
        "{% hero_progress_bar 'bookworm' subject %}", ann, subject=ann
    )


@pytest.mark.django_db
def test_notice_banner_shows_new_unlocks_with_a_csrf_form(
    backend: Backend, make_user: Any
) -> None:
    from hero.visibility import mark_notices_seen

    ann = showcase(make_user)

    html = render("{% hero_notice_banner %}", ann)
    listed = render(
        "{% hero_notices as notices %}{% for n in notices %}{{ n.title }};{% endfor %}",
        ann,
    )

    assert "You unlocked <strong>Points</strong> (Gold)" in html
    assert re.search(r'name="csrfmiddlewaretoken" value="\w+"', html)
    assert 'action="/achievements/notices/seen/"' in html
    assert 'name="next" value="/somewhere/?page=2"' in html
    assert listed == "50 comments;Points;"
    assert render("{% hero_notice_banner %}", AnonymousUser()).strip() == ""
    assert (
        render("{% hero_notice_banner %}").strip() == ""
    )  # no request: no one to notify
    mark_notices_seen(ann)
    assert render("{% hero_notice_banner %}", ann).strip() == ""


def test_level_names(settings: Any) -> None:
    assert render(
        "{{ 3|hero_level_name }} {{ 9|hero_level_name }} [{{ None|hero_level_name }}]"
    ) == ("Gold Level 9 []")
    settings.ACHIEVEMENT_LEVELS = ((1, "Novice"), (2, "Master"))
    assert render("{{ 2|hero_level_name }}") == "Master"


@pytest.mark.django_db
def test_tags_escape_titles(
    backend: Backend, make_user: Any, isolated_registry: Any
) -> None:
    from hero.catalog import sync_catalog

    @hero.achievements.register
    class Sneaky(hero.AchievementBase):
        id = "sneaky"
        title = "<b>bold</b>"
        events = ["sneak"]

        def unlock(self, **state: Any) -> Any:
            return hero.AchievementUnlocked(level=1)

    sync_catalog(backend.alias)
    ann = make_user("ann")
    unlock("sneak", user=ann)

    for source in ("{% hero_notice_banner %}", "{% hero_achievement_list subject %}"):
        html = render(source, ann, subject=ann)
        assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html

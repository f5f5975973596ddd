"""hero's translations: every string it shows a person is in each catalog it
ships, the compiled catalogs match their sources, and pages, tags, the admin,
JSON messages and commands' help show no English from hero in another language.

Nothing here needs GNU gettext: the messages are extracted from the templates
and the Python code directly, and the ``.po`` files are read by a small parser.
"""

from __future__ import annotations

import ast
import gettext
import html
import io
import re
import tokenize
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.core.checks import run_checks
from django.core.management import BaseCommand, get_commands, load_command_class
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_lazy
from django.utils.translation.template import templatize

import hero
from hero.models import Achievement, AchievementCount, AchievementProgress, LedgerEntry
from hero.projections.inline import READ_MODELS
from tests.conftest import Backend
from tests.test_admin import holding, staff, url
from tests.test_tags import render
from tests.test_views import showcase, signed_in

ROOT = Path(__file__).resolve().parent.parent
HERO = ROOT / "hero"
LOCALE = HERO / "locale"
#: Every language hero ships a catalog for.
LANGUAGES = sorted(path.name for path in LOCALE.iterdir() if path.is_dir())

#: Python functions that mark a message: name -> (context, singular, plural)
#: argument positions.
MARKERS: dict[str, tuple[int | None, int, int | None]] = {
    "_": (None, 0, None),
    "gettext": (None, 0, None),
    "gettext_lazy": (None, 0, None),
    "gettext_noop": (None, 0, None),
    "ngettext": (None, 0, 1),
    "ngettext_lazy": (None, 0, 1),
    "pgettext": (0, 1, None),
    "pgettext_lazy": (0, 1, None),
    "npgettext": (0, 1, 2),
    "npgettext_lazy": (0, 1, 2),
}


@dataclass(frozen=True)
class Message:
    """A message to translate: its context, its text, and its plural if any."""

    context: str | None
    msgid: str
    plural: str | None = None


@dataclass(frozen=True)
class Entry:
    """One translated entry of a ``.po`` file."""

    message: Message
    translations: tuple[str, ...]  # one, or one per plural form
    fuzzy: bool


# Reading catalogs --------------------------------------------------------------


def _unquote(text: str) -> str:
    # PO strings are C strings; hero's use only these escapes.
    return ast.literal_eval(text)  # type: ignore[no-any-return]


def read_po(path: Path) -> list[Entry]:
    """The entries of a ``.po`` file, without its header."""
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        fields: dict[str, str] = {}
        current = ""
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,"):
                fuzzy = fuzzy or "fuzzy" in line
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[current] += _unquote(line)
            else:
                current, _, value = line.partition(" ")
                fields[current] = _unquote(value)
        if not fields.get("msgid"):
            continue  # the header
        translations = tuple(
            fields[key]
            for key in sorted(fields)
            if key == "msgstr" or key.startswith("msgstr[")
        )
        message = Message(
            fields.get("msgctxt"), fields["msgid"], fields.get("msgid_plural")
        )
        entries.append(Entry(message, translations, fuzzy))
    return entries


def po_path(language: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / "django.po"


def compiled(language: str) -> gettext.GNUTranslations:
    with open(LOCALE / language / "LC_MESSAGES" / "django.mo", "rb") as mo:
        return gettext.GNUTranslations(mo)


# Finding the messages hero marks -----------------------------------------------


def template_messages(path: Path) -> Iterator[Message]:
    """The messages of a template, found as ``makemessages`` finds them."""
    source = templatize(path.read_text(encoding="utf-8"), origin=str(path))
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    ]
    for index, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.string not in MARKERS:
            continue
        if index + 1 == len(tokens) or tokens[index + 1].string != "(":
            continue
        strings = []
        for following in tokens[index + 2 :]:
            if following.type == tokenize.STRING:
                strings.append(_unquote(following.string))
            elif following.string != ",":
                break
        yield _message(token.string, strings)


def python_messages(path: Path) -> Iterator[Message]:
    """The messages marked in a Python module with the functions of MARKERS."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in MARKERS:
            continue
        strings = [
            arg.value
            for arg in node.args
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        ]
        if strings:
            yield _message(name, strings)


def _message(marker: str, strings: list[str]) -> Message:
    context, singular, plural = MARKERS[marker]
    return Message(
        strings[context] if context is not None else None,
        strings[singular],
        strings[plural] if plural is not None else None,
    )


def templates() -> list[Path]:
    return sorted((HERO / "templates").rglob("*.html"))


def modules() -> list[Path]:
    return sorted(p for p in HERO.rglob("*.py") if "migrations" not in p.parts)


# What is in the catalogs -------------------------------------------------------


def test_hero_ships_dutch_and_german() -> None:
    assert {"nl", "de"} <= set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["templates", "python"])
def test_every_marked_string_is_translated(language: str, kind: str) -> None:
    """A string marked in a template or in the code but missing from a catalog
    (makemessages not run), or left untranslated, fails here."""
    # Arrange: the messages hero marks, and the catalog's entries.
    if kind == "templates":
        marked = {m for path in templates() for m in template_messages(path)}
    else:
        marked = {m for path in modules() for m in python_messages(path)}
    entries = {e.message: e for e in read_po(po_path(language))}

    # Act: look each one up.
    missing = sorted(m.msgid for m in marked if m not in entries)
    untranslated = sorted(
        m.msgid for m in marked if m in entries and not all(entries[m].translations)
    )

    # Assert
    assert len(marked) > 10  # the extraction found hero's strings
    assert missing == [], f"run makemessages -l {language} in hero/"
    assert untranslated == []


def test_the_extraction_finds_what_makemessages_finds(tmp_path: Path) -> None:
    """The extractors above read templates and code as makemessages does."""
    template = tmp_path / "page.html"
    template.write_text(
        "{% load i18n %}{% translate 'Plain' %}"
        "{% translate 'Menu' context 'nav' %}"
        "{% blocktranslate count n=items|length %}{{ n }} item"
        "{% plural %}{{ n }} items{% endblocktranslate %}"
    )
    module = tmp_path / "module.py"
    module.write_text(
        "from django.utils.translation import gettext as _, ngettext, pgettext_lazy\n"
        "a = _('One')\nb = ngettext('%(n)d cat', '%(n)d cats', 2)\n"
        "c = pgettext_lazy('verb', 'Grant')\nd = str('not marked')\n"
    )

    assert set(template_messages(template)) == {
        Message(None, "Plain"),
        Message("nav", "Menu"),
        Message(None, "%(n)s item", "%(n)s items"),
    }
    assert set(python_messages(module)) == {
        Message(None, "One"),
        Message(None, "%(n)d cat", "%(n)d cats"),
        Message("verb", "Grant"),
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalog_matches_its_source(language: str) -> None:
    """The committed .mo says what the .po says: run compilemessages after
    editing a .po file."""
    entries = read_po(po_path(language))
    mo = compiled(language)

    for entry in entries:
        message = entry.message
        assert not entry.fuzzy, message.msgid
        prefix = f"{message.context}\x04" if message.context else ""
        if message.plural is None:
            assert mo.gettext(prefix + message.msgid) == entry.translations[0]
        else:
            # Each count takes the form the catalog's Plural-Forms formula picks.
            for n in range(100):
                assert (
                    mo.ngettext(prefix + message.msgid, message.plural, n)
                    == entry.translations[mo.plural(n)]  # type: ignore[attr-defined]
                ), message.msgid


PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]")


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders_and_markup(language: str) -> None:
    for entry in read_po(po_path(language)):
        wanted = sorted(PLACEHOLDER.findall(entry.message.msgid))
        tags = sorted(re.findall(r"<[^>]+>", entry.message.msgid))
        for translation_ in entry.translations:
            assert sorted(PLACEHOLDER.findall(translation_)) == wanted, translation_
            assert sorted(re.findall(r"<[^>]+>", translation_)) == tags, translation_


def test_the_catalogs_are_packaged() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-data"]["hero"]
    assert "locale/**/*" in package_data
    for language in LANGUAGES:
        assert (LOCALE / language / "LC_MESSAGES" / "django.mo").is_file()


# No English where another language is active ---------------------------------


def english_patterns(language: str) -> list[tuple[str, re.Pattern[str]]]:
    """hero's English strings that read differently in ``language``, as patterns
    that find them in a page's text: as written, or with a capital first letter
    (as the admin shows labels); placeholders match anything."""
    patterns = []
    for entry in read_po(po_path(language)):
        for english in filter(None, (entry.message.msgid, entry.message.plural)):
            if all(t.casefold() == english.casefold() for t in entry.translations):
                continue  # the same word in both languages ("Gold", "Position")
            fixed = PLACEHOLDER.split(re.sub(r"<[^>]+>", " ", english))
            if sum(c.isalpha() for c in "".join(fixed)) < 4:
                continue  # "of", "id": too short to tell from other words
            written = _pattern(fixed)
            fixed[0] = fixed[0][:1].upper() + fixed[0][1:]
            patterns.append((english, re.compile(f"{written}|{_pattern(fixed)}")))
    return patterns


def _pattern(fixed: list[str]) -> str:
    """A pattern of the text between placeholders, whole words only."""
    return r".+?".join(
        (r"\b" if part[:1].isalnum() else "")
        + r"\s*".join(map(re.escape, part.split()))
        + (r"\b" if part[-1:].isalnum() else "")
        for part in fixed
    )


def visible_text(page: str, *site_texts: str) -> str:
    """What a person reads on a page: no tags, entities decoded, without the
    site's own texts (achievement titles, usernames), which are not hero's."""
    text = html.unescape(re.sub(r"<script.*?</script>|<[^>]+>", " ", page, flags=re.S))
    for own in sorted(filter(None, site_texts), key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(own)}(?!\w)", " ", text)
    return re.sub(r"\s+", " ", text)


def site_texts() -> list[str]:
    """The texts of the database that pages show: achievement titles and
    descriptions (the test app's are English), usernames, the names of
    permissions (Django stores them when it migrates, in no language), and
    the actors recorded in the ledger."""
    return [
        *Achievement.objects.values_list("title", flat=True),
        *Achievement.objects.values_list("description", flat=True),
        *User.objects.values_list("username", flat=True),
        *Permission.objects.values_list("name", flat=True),
        *(entry.personal_values()["actor"] for entry in LedgerEntry.objects.all()),
    ]


def assert_no_english(
    language: str, pages: dict[str, str], site_texts: list[str] | None = None
) -> None:
    patterns = english_patterns(language)
    assert len(patterns) > 10
    for name, page in pages.items():
        text = visible_text(page, *(site_texts or []))
        found = [english for english, pattern in patterns if pattern.search(text)]
        assert found == [], f"English on {name}: {found}\n{text}"


def test_assert_no_english_finds_english() -> None:
    """The check below fails on an English page (or it would prove nothing)."""
    with pytest.raises(AssertionError, match="Held by"):
        assert_no_english("de", {"page": "<caption>Held by 3 of 4 users</caption>"})
    with pytest.raises(AssertionError, match="Secret achievement"):
        assert_no_english("nl", {"page": "<h2>Secret <b>achievement</b></h2>"})
    assert_no_english(
        "de",
        {"page": "<caption>Im Besitz von 3 von 4 Benutzern</caption>Secret"},
        ["Secret"],
    )


def _get(client: Client, path: str, **params: Any) -> str:
    response = client.get(path, params)
    assert response.status_code == 200, path
    return response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_pages_and_tags_show_no_english(
    backend: Backend, make_user: Any, settings: Any, language: str
) -> None:
    # Arrange: ann holds Points (Gold, then Diamond: an upgrade notice), 50
    # comments, progress toward Bookworm, and the secret Night owl, granted
    # (a notice too); to bob, Night owl is a placeholder.
    settings.LANGUAGE_CODE = language
    settings.HERO_PUBLIC_PROFILES = True  # so that bob may see ann's page
    ann = showcase(make_user)
    hero.achievements.unlock("score_changed", user=ann, points=10_000)
    hero.achievements.grant(ann, "night_owl", reason="Testing")
    bob = make_user("bob")
    Achievement.objects.filter(pk="comments_50").update(retired=True)
    client = signed_in(ann)

    # Act
    pages = {
        "own page": _get(client, reverse("hero:mine")),
        "ann's page, seen by bob": _get(
            signed_in(bob), reverse("hero:user-by-username", args=["ann"])
        ),
        "held detail": _get(client, reverse("hero:detail", args=["points"])),
        "retired detail": _get(client, reverse("hero:detail", args=["comments_50"])),
        "detail with progress": _get(client, reverse("hero:detail", args=["bookworm"])),
        "tags": render(
            "{% hero_achievement_list ann %}{% hero_achievement_list nobody %}"
            "{% hero_notice_banner %}{% hero_progress_bar 'bookworm' ann %}"
            "{{ 2|hero_level_name }} {{ 9|hero_level_name }}",
            ann,
            ann=ann,
            nobody=AnonymousUser(),
        ),
    }

    # Assert
    assert_no_english(language, pages, site_texts())
    assert f'<html lang="{language}"' in pages["own page"]
    with translation.override(language):
        assert translation.gettext("Your achievements") in pages["own page"]


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_json_messages_are_translated(
    backend: Backend, make_user: Any, settings: Any, language: str
) -> None:
    settings.LANGUAGE_CODE = language
    ann = showcase(make_user)
    client = signed_in(ann)
    client.raise_request_exception = False

    answers = {
        "anonymous": Client().get(reverse("hero:api-mine")),
        "unknown achievement": client.get(reverse("hero:api-detail", args=["nope"])),
        "unknown user": client.get(reverse("hero:api-user-by-username", args=["x"])),
        "wrong method": client.delete(reverse("hero:api-mine")),
        "listing": client.get(reverse("hero:api-mine")),
    }

    errors = {name: r.json().get("error", "") for name, r in answers.items()}
    assert all(errors[name] for name in answers if name != "listing")
    assert_no_english(language, errors, site_texts())
    names = [card["level_name"] for card in answers["listing"].json()["achievements"]]
    with translation.override(language):
        assert translation.gettext("Gold") in names


@pytest.mark.django_db
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_admin_shows_no_english(
    backend: Backend, make_user: Any, settings: Any, language: str
) -> None:
    # Arrange: ann's holdings, progress and ledger; a deleted user's entry.
    settings.LANGUAGE_CODE = language
    ann = showcase(make_user)
    gone = make_user("gone")
    hero.achievements.unlock("points_awarded", user=gone)
    gone.delete()
    client = staff(make_user, superuser=True)
    selected = holding(backend.alias, ann, "points").pk
    rows = {
        Achievement: "points",
        AchievementCount: AchievementCount.objects.filter(achievement="points")
        .first()
        .pk,
        AchievementProgress: AchievementProgress.objects.get(user=ann).pk,
        LedgerEntry: LedgerEntry.objects.filter(user=ann).first().pk,
    }

    # Act
    pages = {"index": _get(client, reverse("admin:index"))}
    pages["app"] = _get(client, reverse("admin:app_list", args=["hero"]))
    for model, pk in rows.items():
        pages[f"{model.__name__} list"] = _get(client, url(model, "changelist"))
        pages[f"{model.__name__} page"] = _get(client, url(model, "change", pk))
    changelist = reverse("admin:hero_achievementunlocked_changelist")
    pages["holdings"] = _get(client, changelist)
    pages["holding"] = _get(
        client, reverse("admin:hero_achievementunlocked_change", args=[selected])
    )
    pages["revoke form"] = client.post(
        changelist, {"action": "revoke", "_selected_action": [selected]}
    ).content.decode()
    pages["revoked"] = client.post(
        changelist,
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": "Testing",
        },
        follow=True,
    ).content.decode()
    catalog = reverse("admin:hero_achievement_changelist")
    grant = {"action": "grant", "_selected_action": ["bookworm", "comments_50"]}
    pages["grant form"] = client.post(catalog, grant).content.decode()
    pages["grant refused"] = client.post(
        catalog, {**grant, "apply": "1", "users": "ann nobody", "level": "1"}
    ).content.decode()
    pages["granted"] = client.post(
        catalog,
        {**grant, "apply": "1", "users": "ann", "level": "2", "reason": "Testing"},
        follow=True,
    ).content.decode()
    user_page = _get(client, reverse("admin:auth_user_change", args=[ann.pk]))
    # hero's inline, not the fields of django.contrib.auth above it.
    pages["user's history"] = user_page[user_page.index('id="hero_history-group"') :]

    # Assert
    assert_no_english(language, pages, site_texts())
    with translation.override(language):
        assert translation.gettext("Revoke achievements") in pages["revoke form"]
        granted = translation.ngettext(
            "Granted %(count)d achievement.", "Granted %(count)d achievements.", 2
        )
        assert granted % {"count": 2} in pages["granted"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_commands_help_shows_no_english(settings: Any, language: str) -> None:
    settings.LANGUAGE_CODE = language
    # Django's own options (--verbosity, ...) are Django's to translate.
    django_options = {
        action.dest for action in BaseCommand().create_parser("m", "c")._actions
    }
    helps = {}
    for name, app in get_commands().items():
        if app == "hero":
            parser = load_command_class(app, name).create_parser("manage.py", name)
            helps[name] = "\n".join(
                [parser.description or ""]
                + [
                    action.help or ""
                    for action in parser._actions
                    if action.dest not in django_options
                ]
            )
            parser.format_help()  # argparse accepts the translated texts

    assert len(helps) >= 7
    # The projections' names ("ledger") are arguments, not words.
    assert_no_english(language, helps, list(READ_MODELS))


@pytest.mark.django_db
def test_a_sites_own_level_names_are_shown_as_given(
    backend: Backend, settings: Any
) -> None:
    # hero's default names are translated; a site's own are its to translate.
    settings.LANGUAGE_CODE = "de"
    assert render("{{ 2|hero_level_name }}/{{ 7|hero_level_name }}") == (
        "Silber/Stufe 7"
    )

    settings.ACHIEVEMENT_LEVELS = ((1, "Silver"), (2, "Level 2"))
    assert render("{{ 1|hero_level_name }}/{{ 2|hero_level_name }}") == (
        "Silver/Level 2"
    )

    # Lazy translations are accepted, and shown in the active language.
    settings.ACHIEVEMENT_LEVELS = ((1, gettext_lazy("Silver")), (2, "Platin"))
    assert [m.id for m in run_checks() if (m.id or "").startswith("hero.")] == []
    assert render("{{ 1|hero_level_name }}/{{ 2|hero_level_name }}") == (
        "Silber/Platin"
    )
    with translation.override("nl"):
        assert render("{{ 1|hero_level_name }}") == "Zilver"

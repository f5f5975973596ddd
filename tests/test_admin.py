"""The admin: read-only views of the read tables, and revoking through events."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

import hero
from hero.admin import HeroUserAdmin, extend_default_user_admin
from hero.exceptions import NotHeldError
from hero.models import (
    Achievement,
    AchievementCount,
    AchievementProgress,
    AchievementUnlocked,
    LedgerEntry,
    StoredEvent,
    StoredSnapshot,
    TrackingPosition,
)
from tests.conftest import Backend
from tests.test_views import showcase

unlock = hero.achievements.unlock
CHANGELIST = "admin:hero_achievementunlocked_changelist"
READ_TABLES = [
    Achievement,
    AchievementUnlocked,
    AchievementCount,
    AchievementProgress,
    LedgerEntry,
]


def staff(make_user: Any, *perms: str, superuser: bool = False) -> Client:
    user = make_user("root" if superuser else "clerk")
    user.is_staff = True
    user.is_superuser = superuser
    user.save()
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:hero_{model._meta.model_name}_{view}", args=args)


def holding(alias: str, user: Any, achievement_id: str) -> AchievementUnlocked | None:
    return (
        AchievementUnlocked.objects.using(alias)
        .filter(user=user, achievement=achievement_id)
        .first()
    )


@pytest.mark.django_db
def test_every_read_table_is_viewable_and_none_is_editable(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = staff(make_user, superuser=True)
    rows = {
        Achievement: "points",
        AchievementUnlocked: holding(backend.alias, ann, "points").pk,
        AchievementCount: AchievementCount.objects.get(
            achievement="points", level=3
        ).pk,
        AchievementProgress: AchievementProgress.objects.get(user=ann).pk,
        LedgerEntry: LedgerEntry.objects.filter(user=ann).first().pk,
    }

    for model, pk in rows.items():
        changelist = client.get(url(model, "changelist"))
        assert changelist.status_code == 200, model
        assert url(model, "add") not in changelist.content.decode()
        assert client.get(url(model, "add")).status_code == 403
        detail = client.get(url(model, "change", pk))
        assert (
            detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
        )
        assert client.post(url(model, "change", pk), {}).status_code == 403
        assert client.post(url(model, "delete", pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=pk).exists()
    # The store's own tables are not in the admin at all.
    for model in (StoredEvent, StoredSnapshot, TrackingPosition):
        assert not admin.site.is_registered(model)


@pytest.mark.django_db
def test_only_staff_see_the_admin(backend: Backend, make_user: Any) -> None:
    client = Client()
    client.force_login(make_user("ann"))

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_ledger_is_searchable_by_user_and_achievement_and_filterable(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    bob = make_user("bob")
    unlock("score_changed", user=bob, points=10)
    client = staff(make_user, superuser=True)
    ledger = url(LedgerEntry, "changelist")

    def positions(query: dict[str, str]) -> list[int]:
        html = client.get(ledger, query).content.decode()
        return sorted(
            int(p)
            for p in re.findall(r'href="/admin/hero/ledgerentry/(\d+)/change/', html)
        )

    def of(**filters: Any) -> list[int]:
        return sorted(
            LedgerEntry.objects.filter(**filters).values_list("position", flat=True)
        )

    assert positions({"q": "bob"}) == of(user=bob)
    assert positions({"q": "bookworm"}) == of(achievement="bookworm")
    assert positions({"kind": "progressed"}) == of(kind="progressed")
    assert positions({"level": "3"}) == of(level=3) != []
    assert positions({"level": "nonsense"}) == []

    held = client.get(reverse(CHANGELIST), {"q": "ann", "level": "3"}).content.decode()
    assert "Gold" in held and re.findall(
        r'name="_selected_action" value="(\d+)"', held
    ) == [str(holding(backend.alias, ann, "points").pk)]


@pytest.mark.django_db
def test_ledger_keeps_entries_of_deleted_users(
    backend: Backend, make_user: Any
) -> None:
    gone = make_user("gone")
    unlock("points_awarded", user=gone)
    pk = gone.pk
    gone.delete()
    client = staff(make_user, superuser=True)

    html = client.get(url(LedgerEntry, "changelist")).content.decode()

    assert f"#{pk} (deleted)" in html
    # The award, and that the user was forgotten when deleted.
    entry = LedgerEntry.objects.get(user_id=pk, kind="unlocked")
    assert LedgerEntry.objects.filter(user_id=pk, kind="forgotten").exists()
    assert client.get(url(LedgerEntry, "change", entry.pk)).status_code == 200


@pytest.mark.django_db
def test_revoking_asks_for_a_reason_and_appends_an_event(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = staff(
        make_user, "hero.view_achievementunlocked", "hero.revoke_achievement"
    )
    clerk = User.objects.get(username="clerk")
    selected = holding(backend.alias, ann, "points").pk
    changelist = reverse(CHANGELIST)

    # The action is offered; choosing it shows what will be revoked and asks why.
    assert 'value="revoke"' in client.get(changelist).content.decode()
    page = client.post(changelist, {"action": "revoke", "_selected_action": [selected]})
    assert page.status_code == 200
    assert "Points (Gold) for ann" in page.content.decode()
    assert holding(backend.alias, ann, "points") is not None

    # No reason: asked again, nothing revoked.
    again = client.post(
        changelist,
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": " ",
        },
    )
    assert "This field is required." in again.content.decode()
    assert holding(backend.alias, ann, "points") is not None

    reason = "<b>Scripted</b> the points"
    done = client.post(
        changelist,
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": reason,
        },
        follow=True,
    )

    assert "Revoked 1 achievement." in done.content.decode()
    assert holding(backend.alias, ann, "points") is None
    entry = LedgerEntry.objects.filter(user=ann).order_by("position").last()
    values = entry.personal_values()
    assert (entry.kind, entry.achievement_id, values["reason"]) == (
        "revoked",
        "points",
        reason,
    )
    assert values["actor"] == f"auth.user:{clerk.pk}"
    assert AchievementCount.objects.holders(["points"])[("points", 3)] == 0
    # The reason is shown as text in the ledger, never as markup.
    superuser = staff(make_user, superuser=True)
    ledger = superuser.get(url(LedgerEntry, "changelist")).content.decode()
    assert (
        "&lt;b&gt;Scripted&lt;/b&gt; the points" in ledger
        and "<b>Scripted</b>" not in ledger
    )


@pytest.mark.django_db
def test_staff_without_the_revoke_permission_cannot_revoke(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = staff(make_user, "hero.view_achievementunlocked")
    selected = holding(backend.alias, ann, "points").pk

    assert 'value="revoke"' not in client.get(reverse(CHANGELIST)).content.decode()
    client.post(
        reverse(CHANGELIST),
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": "no",
        },
    )

    assert holding(backend.alias, ann, "points") is not None
    assert not LedgerEntry.objects.filter(kind="revoked").exists()


@pytest.mark.django_db
def test_revoking_needs_the_csrf_token(backend: Backend, make_user: Any) -> None:
    ann = showcase(make_user)
    client = staff(make_user, superuser=True)
    client.handler.enforce_csrf_checks = True
    selected = holding(backend.alias, ann, "points").pk

    response = client.post(
        reverse(CHANGELIST),
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": "x",
        },
    )

    assert response.status_code == 403
    assert holding(backend.alias, ann, "points") is not None


@pytest.mark.django_db
def test_a_failed_revocation_is_reported_not_raised(
    backend: Backend, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = showcase(make_user)
    client = staff(make_user, superuser=True)
    selected = holding(backend.alias, ann, "points").pk

    def not_held(*args: Any, **kwargs: Any) -> None:
        raise NotHeldError("ann does not hold points.")

    monkeypatch.setattr(hero.achievements, "revoke", not_held)
    response = client.post(
        reverse(CHANGELIST),
        {
            "action": "revoke",
            "_selected_action": [selected],
            "apply": "1",
            "reason": "x",
        },
        follow=True,
    )

    html = response.content.decode()
    assert response.status_code == 200
    # Said in the staff's language, not as the error's message for programmers.
    assert "Not revoked: Points for ann: the user does not hold it." in html
    assert "Revoked 0 achievements." in html


@pytest.mark.django_db
def test_user_admin_shows_the_achievement_history_inline(
    backend: Backend, make_user: Any
) -> None:
    ann = showcase(make_user)
    client = staff(make_user, superuser=True)

    html = client.get(reverse("admin:auth_user_change", args=[ann.pk])).content.decode()

    assert "Achievement history (latest 50)" in html
    positions = list(
        LedgerEntry.objects.filter(user=ann)
        .order_by("-position")
        .values_list("position", flat=True)
    )
    shown = re.findall(r'<td class="field-entry">\s*<p>(\d+)</p>', html)
    assert shown == [str(p) for p in positions]
    # Saving the user still works: the inline is read-only, not in the way.
    response = client.post(
        reverse("admin:auth_user_change", args=[ann.pk]),
        {
            "username": "ann",
            "first_name": "Ann",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00",
            "is_active": "on",
            "hero_history-TOTAL_FORMS": "3",
            "hero_history-INITIAL_FORMS": "3",
        },
    )
    assert response.status_code == 302
    assert User.objects.get(pk=ann.pk).first_name == "Ann"
    assert list(
        LedgerEntry.objects.filter(user=ann)
        .order_by("-position")
        .values_list("position", flat=True)
    ) == list(positions)


def test_only_djangos_own_user_admin_is_extended() -> None:
    assert type(admin.site.get_model_admin(User)) is HeroUserAdmin

    class SiteUserAdmin(UserAdmin):  # type: ignore[type-arg]
        pass

    site = admin.AdminSite(name="other")
    site.register(User, SiteUserAdmin)
    assert extend_default_user_admin(site) is False
    assert type(site.get_model_admin(User)) is SiteUserAdmin

    plain = admin.AdminSite(name="plain")
    plain.register(User, UserAdmin)
    assert extend_default_user_admin(plain) is True
    assert type(plain.get_model_admin(User)) is HeroUserAdmin
    assert extend_default_user_admin(admin.AdminSite(name="empty")) is False


ACHIEVEMENTS = "admin:hero_achievement_changelist"


def grant_post(client: Client, data: dict[str, Any], **kwargs: Any) -> Any:
    return client.post(
        reverse(ACHIEVEMENTS),
        {"action": "grant", "_selected_action": ["points", "comments_50"], **data},
        **kwargs,
    )


@pytest.mark.django_db
def test_granting_asks_whom_at_which_level_and_why_and_appends_events(
    backend: Backend, make_user: Any
) -> None:
    # Arrange: ann and bob hold nothing; a clerk may view the catalog and grant.
    ann, bob = make_user("ann"), make_user("bob")
    client = staff(make_user, "hero.view_achievement", "hero.grant_achievement")
    clerk = User.objects.get(username="clerk")

    # The action is offered; choosing it lists the achievements and asks.
    assert 'value="grant"' in client.get(reverse(ACHIEVEMENTS)).content.decode()
    page = grant_post(client, {}).content.decode()
    assert "Grant these achievements?" in page and "50 comments" in page
    assert 'name="users"' in page and 'name="level"' in page

    # Unknown users or no reason: asked again, nothing granted.
    again = grant_post(
        client, {"apply": "1", "users": "ann nobody", "level": "2", "reason": "x"}
    ).content.decode()
    assert "No user is called nobody." in again
    again = grant_post(
        client, {"apply": "1", "users": "ann", "level": "2", "reason": " "}
    ).content.decode()
    assert "This field is required." in again
    assert not LedgerEntry.objects.exists()

    # Act: both achievements to both users, at Silver.
    done = grant_post(
        client,
        {"apply": "1", "users": "ann,\nbob ann", "level": "2", "reason": "Meetup"},
        follow=True,
    )

    # Assert: four grants, each an event with the clerk as actor.
    assert "Granted 4 achievements." in done.content.decode()
    entries = LedgerEntry.objects.filter(kind="granted")
    assert sorted(entries.values_list("user", "achievement", "level")) == sorted(
        (user.pk, achievement, 2)
        for user in (ann, bob)
        for achievement in ("points", "comments_50")
    )
    assert {
        (values["reason"], values["actor"])
        for values in (entry.personal_values() for entry in entries)
    } == {("Meetup", f"auth.user:{clerk.pk}")}
    assert holding(backend.alias, bob, "points").level == 2
    # The ledger's admin lists them as granted, with reason and actor.
    superuser = staff(make_user, superuser=True)
    ledger = superuser.get(url(LedgerEntry, "changelist"), {"kind": "granted"})
    assert ledger.content.decode().count("Meetup") == 4


@pytest.mark.django_db
def test_a_grant_that_cannot_be_made_is_reported_not_raised(
    backend: Backend, make_user: Any
) -> None:
    # ann already holds Points at Gold; granting Silver is refused for her only.
    ann = showcase(make_user)
    client = staff(make_user, superuser=True)

    response = grant_post(
        client,
        {"apply": "1", "users": "ann", "level": "2", "reason": "x"},
        follow=True,
    )

    html = response.content.decode()
    assert (
        "Not granted: Points for ann: the user already holds it at this level or higher."
        in html
    )
    assert "Granted 1 achievement." in html  # 50 comments: ann holds it at Bronze
    assert holding(backend.alias, ann, "points").level == 3


@pytest.mark.django_db
def test_staff_without_the_grant_permission_cannot_grant(
    backend: Backend, make_user: Any
) -> None:
    make_user("ann")
    client = staff(make_user, "hero.view_achievement", "hero.revoke_achievement")

    assert 'value="grant"' not in client.get(reverse(ACHIEVEMENTS)).content.decode()
    grant_post(client, {"apply": "1", "users": "ann", "level": "1", "reason": "x"})

    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_granting_needs_the_csrf_token(backend: Backend, make_user: Any) -> None:
    make_user("ann")
    client = staff(make_user, superuser=True)
    client.handler.enforce_csrf_checks = True

    response = grant_post(
        client, {"apply": "1", "users": "ann", "level": "1", "reason": "x"}
    )

    assert response.status_code == 403
    assert not LedgerEntry.objects.exists()

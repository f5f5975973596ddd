"""A read-only admin for hero's read tables and its ledger.

Every table here is a projection of events, so nothing in the admin adds,
changes or deletes a row. The two changes it offers go through hero's API,
which appends events: revoking an achievement
(:func:`hero.achievements.revoke`, for staff with the
``hero.revoke_achievement`` permission) and granting one
(:func:`hero.achievements.grant`, with ``hero.grant_achievement``). The event
store's own tables are not registered: the ledger shows the same events.

The user admin gains an inline with each user's achievement history when it is
Django's own ``UserAdmin`` (hero must come after ``django.contrib.auth`` in
``INSTALLED_APPS``). A site with its own user admin adds
:class:`HeroUserAdminMixin` to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

import hero
from hero.exceptions import (
    AlreadyHeldError,
    HeroError,
    InvalidUser,
    NotHeldError,
    StoreBusy,
    UnknownAchievement,
    UnlockConflict,
)
from hero.models import (
    Achievement,
    AchievementCount,
    AchievementProgress,
    AchievementUnlocked,
    LedgerEntry,
)
from hero.visibility import level_name, level_names

if TYPE_CHECKING:
    # The stubs' admin and formset classes take the model as a type argument;
    # Django's own take none at runtime.
    _AchievementAdmin = admin.ModelAdmin[Achievement]
    _AchievementUnlockedAdmin = admin.ModelAdmin[AchievementUnlocked]
    _AchievementCountAdmin = admin.ModelAdmin[AchievementCount]
    _AchievementProgressAdmin = admin.ModelAdmin[AchievementProgress]
    _LedgerEntryAdmin = admin.ModelAdmin[LedgerEntry]
    # Ledger entries inline on the user's page, whatever the user model.
    _LedgerEntryFormSet = forms.BaseInlineFormSet[LedgerEntry, Any]
    _LedgerEntryInline = admin.TabularInline[LedgerEntry, Any]
    _UserAdmin = UserAdmin[Any]
else:
    _AchievementAdmin = _AchievementUnlockedAdmin = admin.ModelAdmin
    _AchievementCountAdmin = _AchievementProgressAdmin = admin.ModelAdmin
    _LedgerEntryAdmin = admin.ModelAdmin
    _LedgerEntryFormSet = forms.BaseInlineFormSet
    _LedgerEntryInline = admin.TabularInline
    _UserAdmin = UserAdmin

REVOKE_PERMISSION = "hero.revoke_achievement"
GRANT_PERMISSION = "hero.grant_achievement"


def _username_field() -> str:
    return str(get_user_model().USERNAME_FIELD)


USER_SEARCH = f"user__{_username_field()}"


class ReadOnlyAdminMixin:
    """No add, change or delete: the rows follow the events."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LevelFilter(admin.SimpleListFilter):
    """Filter by level, named as ``ACHIEVEMENT_LEVELS`` names them."""

    title = _("level")
    parameter_name = "level"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(number), name) for number, name in level_names().items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        try:
            return queryset.filter(level=int(value))
        except ValueError:
            return queryset.none()


def _level(obj: Any) -> str:
    return level_name(obj.level) or "-"


def failure(error: HeroError) -> str:
    """Why an action failed, for staff: in the active language for the errors
    an admin action can meet, the error's own message otherwise."""
    if isinstance(error, NotHeldError):
        return gettext("the user does not hold it.")
    if isinstance(error, AlreadyHeldError):
        return gettext("the user already holds it at this level or higher.")
    if isinstance(error, UnknownAchievement):
        return gettext("no achievement with this id is defined.")
    if isinstance(error, InvalidUser):
        return gettext("the user no longer exists.")
    if isinstance(error, (UnlockConflict, StoreBusy)):
        return gettext("others were changing it at the same time; try again.")
    return str(error)


# Actions that change achievements --------------------------------------------
#
# Each asks on a page of its own (the selection, and a form with the reason)
# before it changes anything, then makes each change through hero's API, which
# appends events; the admin itself never writes a row.


def confirmation(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    *,
    action: str,
    title: str,
    template: str,
    form: forms.Form,
    selected: list[Any],
    **extra: Any,
) -> TemplateResponse:
    """The page that shows what an action will change and asks for its form
    (``extra``: more context for the template)."""
    context = {
        **extra,
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "action": action,
        "selected": selected,
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, template, context)


def apply_each(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    changes: list[tuple[str, Callable[[], object]]],
    *,
    failed: str,
    done: Callable[[int], str],
) -> None:
    """Make each (description, change) in turn; report each that fails as
    ``failed`` % {"item", "error"}, then how many were made, as ``done(count)``
    % {"count"} (a function, so that it can choose the plural form)."""
    made = 0
    for item, change in changes:
        try:
            change()
        except HeroError as error:
            model_admin.message_user(
                request,
                failed % {"item": item, "error": failure(error)},
                messages.WARNING,
            )
        else:
            made += 1
    model_admin.message_user(request, done(made) % {"count": made}, messages.SUCCESS)


def _item(achievement: Achievement, user: Any) -> str:
    return gettext("%(achievement)s for %(user)s") % {
        "achievement": achievement,
        "user": user,
    }


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=2000,
        help_text=_("Recorded in the ledger with your name."),
    )


class RevokeForm(ReasonForm):
    """What the revoke action asks: why."""


class GrantForm(ReasonForm):
    """What the grant action asks: to whom, at which level, and why."""

    users = forms.CharField(
        label=_("Users"),
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=_("Usernames, separated by spaces, commas or new lines."),
    )
    level = forms.TypedChoiceField(label=_("Level"), coerce=int)
    field_order = ("users", "level", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        level = self.fields["level"]
        assert isinstance(level, forms.TypedChoiceField)
        level.choices = sorted(level_names().items())

    def clean_users(self) -> list[Any]:
        """The users named, each once, in the order given; every one must exist."""
        names = list(dict.fromkeys(re.split(r"[\s,]+", self.cleaned_data["users"])))
        names = [name for name in names if name]
        found = {
            user.get_username(): user
            for user in get_user_model()._default_manager.filter(
                **{f"{_username_field()}__in": names}
            )
        }
        unknown = [name for name in names if name not in found]
        if unknown:
            raise forms.ValidationError(
                ngettext(
                    "No user is called %(names)s.",
                    "No users are called %(names)s.",
                    len(unknown),
                )
                % {"names": ", ".join(unknown)}
            )
        return [found[name] for name in names]


@admin.register(Achievement)
class AchievementAdmin(ReadOnlyAdminMixin, _AchievementAdmin):
    list_display = (
        "id",
        "title",
        "secret",
        "invisible",
        "steps",
        "retired",
        "holder_count",
    )
    list_filter = ("secret", "invisible", "retired")
    search_fields = ("id", "title")
    actions = ("grant",)
    grant_template = "hero/admin/grant.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super().get_queryset(request).annotate(holder_total=Sum("counts__holders"))
        )

    @admin.display(description=_("holders"), ordering="holder_total")
    def holder_count(self, obj: Any) -> int:
        return obj.holder_total or 0

    def has_grant_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(GRANT_PERMISSION))

    @admin.action(description=_("Grant selected achievements…"), permissions=["grant"])
    def grant(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        """Ask to whom, at which level and why, then grant each selected
        achievement to each user through hero's API."""
        if not self.has_grant_permission(request):
            raise PermissionDenied
        achievements = list(queryset)
        form = GrantForm(request.POST if "apply" in request.POST else None)
        if not (form.is_bound and form.is_valid()):
            return confirmation(
                self,
                request,
                action="grant",
                title=gettext("Grant achievements"),
                template=self.grant_template,
                form=form,
                selected=achievements,
            )
        data = form.cleaned_data
        apply_each(
            self,
            request,
            [
                (
                    _item(achievement, user),
                    partial(
                        hero.achievements.grant,
                        user,
                        achievement.id,
                        level=data["level"],
                        reason=data["reason"],
                        actor=request.user,
                    ),
                )
                for achievement in achievements
                for user in data["users"]
            ],
            failed=gettext("Not granted: %(item)s: %(error)s"),
            done=lambda count: ngettext(
                "Granted %(count)d achievement.",
                "Granted %(count)d achievements.",
                count,
            ),
        )
        return None


@admin.register(AchievementUnlocked)
class AchievementUnlockedAdmin(ReadOnlyAdminMixin, _AchievementUnlockedAdmin):
    list_display = ("user", "achievement", "level_display", "unlocked_at", "updated_at")
    list_filter = (LevelFilter, ("achievement", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user", "achievement")
    search_fields = (USER_SEARCH, "achievement__id", "achievement__title")
    actions = ("revoke",)
    revoke_template = "hero/admin/revoke.html"

    @admin.display(description=_("level"), ordering="level")
    def level_display(self, obj: AchievementUnlocked) -> str:
        return _level(obj)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(REVOKE_PERMISSION))

    @admin.action(
        description=_("Revoke selected achievements…"), permissions=["revoke"]
    )
    def revoke(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        """Ask for a reason, then revoke each one through hero's API."""
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        holdings = list(queryset.select_related("user", "achievement"))
        form = RevokeForm(request.POST if "apply" in request.POST else None)
        if not (form.is_bound and form.is_valid()):
            return confirmation(
                self,
                request,
                action="revoke",
                title=gettext("Revoke achievements"),
                template=self.revoke_template,
                form=form,
                selected=holdings,
                holdings=holdings,  # as templates overriding revoke.html knew it
            )
        apply_each(
            self,
            request,
            [
                (
                    _item(holding.achievement, holding.user),
                    partial(
                        hero.achievements.revoke,
                        holding.user,
                        holding.achievement_id,
                        reason=form.cleaned_data["reason"],
                        actor=request.user,
                    ),
                )
                for holding in holdings
            ],
            failed=gettext("Not revoked: %(item)s: %(error)s"),
            done=lambda count: ngettext(
                "Revoked %(count)d achievement.",
                "Revoked %(count)d achievements.",
                count,
            ),
        )
        return None


@admin.register(AchievementCount)
class AchievementCountAdmin(ReadOnlyAdminMixin, _AchievementCountAdmin):
    list_display = ("achievement", "level_display", "holders")
    list_filter = (LevelFilter,)
    list_select_related = ("achievement",)
    search_fields = ("achievement__id", "achievement__title")

    @admin.display(description=_("level"), ordering="level")
    def level_display(self, obj: AchievementCount) -> str:
        return _level(obj)


@admin.register(AchievementProgress)
class AchievementProgressAdmin(ReadOnlyAdminMixin, _AchievementProgressAdmin):
    list_display = (
        "user",
        "achievement",
        "steps",
        "total",
        "percent_display",
        "updated_at",
    )
    list_select_related = ("user", "achievement")
    search_fields = (USER_SEARCH, "achievement__id", "achievement__title")

    @admin.display(description=_("percent"))
    def percent_display(self, obj: AchievementProgress) -> str:
        return f"{obj.percent:.0f}%"


class _PersonalColumns:
    """The ledger's sealed values as columns: opened for display ("" when
    there is none, or the user was forgotten)."""

    @admin.display(description=_("actor"))
    def actor_display(self, obj: LedgerEntry) -> str:
        return str(obj.personal_values()["actor"])

    @admin.display(description=_("reason"))
    def reason_display(self, obj: LedgerEntry) -> str:
        return str(obj.personal_values()["reason"])


class _UserNames:
    """Shows the user of a ledger row by name; the ledger keeps entries of users
    deleted since, so the name is looked up, never joined."""

    def with_usernames(self, queryset: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
        users = get_user_model()._default_manager
        name = users.filter(pk=OuterRef("user_id")).values(_username_field())[:1]
        return queryset.annotate(username=Subquery(name))

    @admin.display(description=_("user"), ordering="username")
    def user_display(self, obj: Any) -> str:
        name = getattr(obj, "username", None)
        if name is not None:
            return str(name)
        return gettext("#%(pk)s (deleted)") % {"pk": obj.user_id}


@admin.register(LedgerEntry)
class LedgerEntryAdmin(
    _UserNames, _PersonalColumns, ReadOnlyAdminMixin, _LedgerEntryAdmin
):
    list_display = (
        "position",
        "occurred_at",
        "user_display",
        "kind",
        "achievement_display",
        "level_display",
        "previous_level",
        "steps",
        "actor_display",
        "reason_display",
    )
    list_filter = ("kind", LevelFilter)
    # Never join the users table (a deleted user's entries would vanish).
    list_select_related = ()
    search_fields = (USER_SEARCH, "achievement__id", "achievement__title")
    ordering = ("-position",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.with_usernames(super().get_queryset(request))

    @admin.display(description=_("level"), ordering="level")
    def level_display(self, obj: LedgerEntry) -> str:
        return _level(obj)

    # The id as recorded, never joined with the catalog; listed as the column
    # "achievement_id" it would have an English header of Django's making.
    @admin.display(description=_("achievement"), ordering="achievement_id")
    def achievement_display(self, obj: LedgerEntry) -> str:
        return obj.achievement_id or ""


class HistoryFormSet(_LedgerEntryFormSet):
    """The latest entries only: a busy user's history would fill the page."""

    max_entries = 50

    @classmethod
    def get_default_prefix(cls) -> str:
        return "hero_history"  # the relation has no name to derive one from

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset()[: self.max_entries]
        return self._latest


class AchievementHistoryInline(
    _PersonalColumns, ReadOnlyAdminMixin, _LedgerEntryInline
):
    """A user's latest ledger entries, newest first (all of them: the ledger's
    admin, searched by the username)."""

    model = LedgerEntry
    fk_name = "user"
    formset = HistoryFormSet
    fields = (
        "entry",
        "occurred_at",
        "kind",
        "achievement",
        "level",
        "previous_level",
        "steps",
        "actor_display",
        "reason_display",
    )
    readonly_fields = fields
    ordering = ("-position",)
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name = _("achievement history entry")
    verbose_name_plural = _("achievement history (latest 50)")

    # Not the "position" field itself: a formset keeps the primary key as a
    # hidden input, and the admin would hide its column.
    @admin.display(description=_("position"))
    def entry(self, obj: LedgerEntry) -> int:
        return obj.position


class HeroUserAdminMixin:
    """Add hero's history inline to a user admin:
    ``class MyUserAdmin(HeroUserAdminMixin, UserAdmin)``."""

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        inlines = list(super().get_inlines(request, obj))  # type: ignore[misc]
        if obj is not None:
            inlines.append(AchievementHistoryInline)
        return inlines


class HeroUserAdmin(HeroUserAdminMixin, _UserAdmin):
    """Django's ``UserAdmin`` with hero's history inline."""


def extend_default_user_admin(site: admin.AdminSite = admin.site) -> bool:
    """Swap Django's own ``UserAdmin`` for :class:`HeroUserAdmin`; leave any
    other user admin alone. Returns whether it did."""
    user_model = get_user_model()
    if not site.is_registered(user_model):
        return False
    if type(site.get_model_admin(user_model)) is not UserAdmin:
        return False
    site.unregister(user_model)
    site.register(user_model, HeroUserAdmin)
    return True


extend_default_user_admin()

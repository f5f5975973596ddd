"""hero's default pages and their JSON twins.

They read only the read tables, through :mod:`hero.visibility`, which applies
the secrecy rules. A user's page shows another user's achievements only when
the site makes profiles public (``HERO_PUBLIC_PROFILES``; by pk only with
``HERO_PROFILES_BY_PK`` too); a user always sees their own. Every page depends
on who is asking and changes with each unlock, so none is cached. The one that
changes state (marking notices as seen) takes only POST, with Django's CSRF
protection.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.generic import TemplateView

from hero import visibility
from hero.visibility import Listing


def get_user_or_404(*, pk: str | None = None, username: str | None = None) -> Any:
    """An active user by pk or username; 404 for anyone else (or a malformed pk)."""
    model = get_user_model()
    if "\x00" in (pk or username or ""):
        raise Http404(_("No such user."))  # PostgreSQL refuses NUL in text
    lookup = {"pk": pk} if pk is not None else {model.USERNAME_FIELD: username}
    try:
        user = model._default_manager.get(**lookup)
    except (model.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404(_("No such user.")) from None
    if not getattr(user, "is_active", True):
        raise Http404(_("No such user."))
    return user


def _subject(request: HttpRequest, kwargs: dict[str, Any]) -> Any:
    """The user whose achievements are asked for: the visitor themself, or
    another user if profiles may be found (:func:`hero.visibility.profile_found`).
    Otherwise the same 404 as for no such user, found without a query, so that
    a private profile tells nothing about who has an account."""
    viewer = request.user
    by_pk = "username" not in kwargs
    if viewer.is_authenticated and (
        str(viewer.pk) == kwargs["pk"]
        if by_pk
        else viewer.get_username() == kwargs["username"]
    ):
        return viewer
    if not visibility.profile_found(by_pk):
        raise Http404(_("No such user."))
    if by_pk:
        return get_user_or_404(pk=kwargs["pk"])
    return get_user_or_404(username=kwargs["username"])


def _detail_url(card_id: str | None) -> str | None:
    return reverse("hero:detail", args=[card_id]) if card_id else None


def listing_json(
    request: HttpRequest, subject: Any, listing: Listing
) -> dict[str, Any]:
    """The JSON body of a user's achievements."""
    cards = []
    for card in listing.cards:
        data = card.as_json()
        data["image"] = request.build_absolute_uri(data["image"])
        url = _detail_url(card.id)
        data["url"] = request.build_absolute_uri(url) if url else None
        cards.append(data)
    return {
        "user": {"id": subject.pk, "username": subject.get_username()},
        "unlocked": listing.unlocked,
        "listed": listing.listed,
        "achievements": cards,
    }


@method_decorator(never_cache, name="dispatch")
class AchievementListView(TemplateView):
    """A user's achievements, as the visitor may see them: their own, or
    another user's when the site makes profiles public (404 otherwise)."""

    template_name = "hero/achievement_list.html"
    http_method_names = ("get", "head", "options")

    def get_subject(self) -> Any:
        return _subject(self.request, self.kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        subject = self.get_subject()
        viewer = self.request.user
        is_own = viewer.is_authenticated and viewer.pk == subject.pk
        context.update(
            subject=subject,
            is_own=is_own,
            listing=visibility.listing(subject, viewer),
            notices=visibility.notices(subject) if is_own else [],
        )
        return context


class MyAchievementsView(LoginRequiredMixin, AchievementListView):
    """The signed-in user's own achievements, with their unseen notices."""

    def get_subject(self) -> Any:
        return self.request.user


@method_decorator(never_cache, name="dispatch")
class AchievementDetailView(TemplateView):
    """One achievement with its level ladder; 404 unless revealed to the visitor."""

    template_name = "hero/achievement_detail.html"
    http_method_names = ("get", "head", "options")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        found = visibility.detail(self.kwargs["achievement_id"], self.request.user)
        if found is None:
            raise Http404(_("No such achievement."))
        context["detail"] = found
        context["achievement"] = found.achievement
        return context


@method_decorator(csrf_protect, name="dispatch")
class NoticesSeenView(LoginRequiredMixin, View):
    """Mark the signed-in user's notices as seen (up to ``upto``, if posted),
    then go back to ``next`` when it is a URL of this site."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest) -> HttpResponse:
        visibility.mark_notices_seen(
            request.user, _int_or_none(request.POST.get("upto"))
        )
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target,
            allowed_hosts={request.get_host()},
            require_https=request.is_secure(),
        ):
            target = reverse("hero:mine")
        return HttpResponseRedirect(target)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


# JSON ------------------------------------------------------------------------


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@method_decorator(never_cache, name="dispatch")
class JsonView(View):
    """Base of the JSON endpoints: errors are JSON too (404, 403, 405)."""

    http_method_names: tuple[str, ...] = ("get", "head", "options")
    login_required = False

    def dispatch(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if self.login_required and not request.user.is_authenticated:
            return _error(403, _("Sign in to see this."))
        try:
            return super().dispatch(request, *args, **kwargs)
        except Http404 as error:
            return _error(404, str(error) or _("Not found."))

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = _error(
            405,
            _("Method %(method)s is not allowed here.") % {"method": request.method},
        )
        # Django's own list, as its 405 response gives it; private, so not stubbed.
        allowed = self._allowed_methods()  # type: ignore[attr-defined]
        response["Allow"] = ", ".join(m.upper() for m in allowed)
        return response


class MyAchievementsJson(JsonView):
    login_required = True

    def get(self, request: HttpRequest) -> JsonResponse:
        listing = visibility.listing(request.user, request.user)
        return JsonResponse(listing_json(request, request.user, listing))


class UserAchievementsJson(JsonView):
    def get(self, request: HttpRequest, **kwargs: Any) -> JsonResponse:
        subject = _subject(request, kwargs)
        listing = visibility.listing(subject, request.user)
        return JsonResponse(listing_json(request, subject, listing))


class AchievementDetailJson(JsonView):
    def get(self, request: HttpRequest, achievement_id: str) -> JsonResponse:
        found = visibility.detail(achievement_id, request.user)
        if found is None:
            raise Http404(_("No such achievement."))
        data = found.as_json()
        data["image"] = request.build_absolute_uri(data["image"])
        return JsonResponse(data)


@method_decorator(csrf_protect, name="dispatch")
class NoticesJson(JsonView):
    """GET: the signed-in user's unseen notices. POST: mark them seen."""

    http_method_names = ("get", "post", "head", "options")
    login_required = True

    def get(self, request: HttpRequest) -> JsonResponse:
        found = visibility.notices(request.user, limit=20)
        items = []
        for notice in found:
            data = notice.as_json()
            data["image"] = request.build_absolute_uri(data["image"])
            items.append(data)
        return JsonResponse(
            {"notices": items, "upto": found[0].position if found else None}
        )

    def post(self, request: HttpRequest) -> JsonResponse:
        seen = visibility.mark_notices_seen(
            request.user, _int_or_none(request.POST.get("upto"))
        )
        return JsonResponse({"seen_position": seen})

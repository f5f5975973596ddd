"""Template tags for a site's own pages: ``{% load hero_tags %}``.

Each tag shows a *subject* user's achievements as the *viewer* may see them
(the secrecy rules of :mod:`hero.visibility`): the viewer is ``request.user``
when the context has a request, and the subject otherwise (an e-mail to the
subject shows them everything they unlocked).
"""

from __future__ import annotations

from typing import Any

from django import template

from hero import visibility
from hero.models import Achievement
from hero.visibility import Listing, Notice, ProgressDisplay

register = template.Library()


def _viewer(context: template.Context, subject: Any) -> Any:
    request = context.get("request")
    return getattr(request, "user", None) if request is not None else subject


def _has_user(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


@register.simple_tag(takes_context=True)
def hero_achievements(context: template.Context, user: Any) -> Listing:
    """A user's achievements: ``{% hero_achievements user as listing %}``, then
    ``listing.unlocked``, ``listing.listed`` and ``listing.cards``."""
    if not _has_user(user):
        return Listing([])
    return visibility.listing(user, _viewer(context, user))


@register.inclusion_tag("hero/includes/listing.html", takes_context=True)
def hero_achievement_list(context: template.Context, user: Any) -> dict[str, Any]:
    """Render a user's achievements as hero's pages do:
    ``{% hero_achievement_list user %}``."""
    return {"listing": hero_achievements(context, user)}


@register.simple_tag(takes_context=True)
def hero_image(
    context: template.Context, achievement: str | Achievement, user: Any
) -> str:
    """URL of the achievement's image for the user, unlocked, locked or secret:
    ``<img src="{% hero_image "points" request.user %}" alt="">``. Empty for an
    unknown achievement, or one the viewer may not know of."""
    return visibility.image_for(achievement, user, _viewer(context, user))


@register.simple_tag(takes_context=True)
def hero_progress(
    context: template.Context, achievement: str | Achievement, user: Any
) -> ProgressDisplay | None:
    """The user's progress toward an achievement with steps, None once it is
    unlocked: ``{% hero_progress "reader" user as progress %}`` then
    ``progress.steps``, ``progress.total``, ``progress.percent``."""
    return visibility.progress_for(achievement, user, _viewer(context, user))


@register.inclusion_tag("hero/includes/progress.html", takes_context=True)
def hero_progress_bar(
    context: template.Context, achievement: str | Achievement, user: Any
) -> dict[str, Any]:
    """A progress bar, or nothing: ``{% hero_progress_bar "reader" user %}``."""
    return {"progress": hero_progress(context, achievement, user)}


@register.simple_tag(takes_context=True)
def hero_notices(context: template.Context, limit: int = 5) -> list[Notice]:
    """The signed-in user's unseen unlocks, latest first:
    ``{% hero_notices as notices %}``."""
    request = context.get("request")
    return visibility.notices(getattr(request, "user", None), limit=limit)


@register.inclusion_tag("hero/includes/notices.html", takes_context=True)
def hero_notice_banner(context: template.Context, limit: int = 5) -> dict[str, Any]:
    """ "You unlocked ..." with a button that marks it seen:
    ``{% hero_notice_banner %}`` (needs the request and CSRF token in the context)."""
    return {
        "notices": hero_notices(context, limit),
        "request": context.get("request"),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def hero_level_name(level: int | None) -> str:
    """``{{ 3|hero_level_name }}`` → ``Gold``, from ``ACHIEVEMENT_LEVELS``."""
    return visibility.level_name(level) or ""

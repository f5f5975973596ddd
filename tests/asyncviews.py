"""Async views of a site, calling hero's async API (the URLconf of tests/test_async.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import hero


@csrf_exempt
async def award(request: HttpRequest, username: str) -> JsonResponse:
    """Report a user's points; answer what changed and what they hold now."""
    user = await get_user_model().objects.aget(username=username)
    outcomes = await hero.achievements.aunlock(
        "score_changed", user=user, points=int(request.POST["points"])
    )
    return JsonResponse(
        {
            "outcomes": [
                [o.achievement_id, o.level, o.previous_level] for o in outcomes
            ],
            "levels": await hero.achievements.alevels(user),
        }
    )


@csrf_exempt
async def take_away(request: HttpRequest, username: str) -> JsonResponse:
    """Revoke Points from a user, by the signed-in user, and answer the history."""
    user = await get_user_model().objects.aget(username=username)
    actor: Any = await request.auser()
    revocation = await hero.achievements.arevoke(
        user, "points", reason=request.POST["reason"], actor=actor
    )
    history = await hero.achievements.ahistory(user, "points")
    return JsonResponse(
        {
            "revoked": [revocation.achievement_id, revocation.level, revocation.actor],
            "history": [entry.kind for entry in history],
        }
    )


urlpatterns = [
    path("award/<str:username>/", award),
    path("revoke/<str:username>/", take_away),
]

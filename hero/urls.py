"""hero's default views: ``path("achievements/", include("hero.urls"))``.

Pages (names in the ``hero`` namespace), each with a JSON twin under ``api/``:

========================  =========================  ==============================
Path                      Page                       JSON
========================  =========================  ==============================
``""``                    ``mine``                   ``api-mine`` (``api/me/``)
``users/<pk>/``           ``user``                   ``api-user``
``users/@<username>/``    ``user-by-username``       ``api-user-by-username``
``<achievement_id>/``     ``detail``                 ``api-detail``
``notices/seen/`` (POST)  ``notices-seen``           ``api-notices``
========================  =========================  ==============================

``users/...`` answer 404 for anyone but the user themself unless the site sets
``HERO_PUBLIC_PROFILES = True`` (and, for ``users/<pk>/``,
``HERO_PROFILES_BY_PK = True``).
"""

from __future__ import annotations

from django.urls import path

from hero import views

app_name = "hero"

urlpatterns = [
    path("", views.MyAchievementsView.as_view(), name="mine"),
    path("notices/seen/", views.NoticesSeenView.as_view(), name="notices-seen"),
    # "@" first: a username is never taken for a pk.
    path(
        "users/@<str:username>/",
        views.AchievementListView.as_view(),
        name="user-by-username",
    ),
    path("users/<str:pk>/", views.AchievementListView.as_view(), name="user"),
    path("api/me/", views.MyAchievementsJson.as_view(), name="api-mine"),
    path("api/notices/", views.NoticesJson.as_view(), name="api-notices"),
    path(
        "api/users/@<str:username>/",
        views.UserAchievementsJson.as_view(),
        name="api-user-by-username",
    ),
    path("api/users/<str:pk>/", views.UserAchievementsJson.as_view(), name="api-user"),
    path(
        "api/achievements/<str:achievement_id>/",
        views.AchievementDetailJson.as_view(),
        name="api-detail",
    ),
    # Last: a single path segment is an achievement id.
    path("<str:achievement_id>/", views.AchievementDetailView.as_view(), name="detail"),
]

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    # A sign-in page for every user (the admin's lets only staff in), in the
    # admin's look, so the demo needs no templates of its own.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="admin/login.html"),
        name="login",
    ),
    path("achievements/", include("hero.urls")),
    path("", RedirectView.as_view(pattern_name="hero:mine")),
]

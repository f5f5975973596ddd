#!/usr/bin/env python3
"""hero's demo: a few thousand users' activity, unlocked through hero.

Sets up the demo project's database (SQLite in example/demo.sqlite3, or the
database given with --database-url), simulates the users' activity through
``hero.achievements.unlock`` and shows what hero made of it: unlocks and rarity
per achievement and level, one user's history, and a rebuild and verification
of the read tables. Running it again changes nothing: the activity is the same,
and hero records only what is new.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
USERS = 3000
SEED = 2026


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help="database to run on, e.g. postgres://postgres@127.0.0.1:5432/hero_demo "
        "(default: SQLite in example/demo.sqlite3)",
    )
    parser.add_argument("--users", type=int, default=USERS)
    args = parser.parse_args()
    if args.database_url:
        os.environ["HERO_DEMO_DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

    import django

    django.setup()
    started = time.monotonic()
    section("Setting up the database")
    prepare_database()
    users = create_users(args.users)
    section(f"Simulating the activity of {len(users)} users")
    calls, changes = simulate(users)
    print(f"{calls} unlock calls recorded {changes} changes.")
    section("Unlocks and rarity")
    report_rarity()
    someone = telling_user(users)
    section(f"History of {someone} (manage.py hero_audit {someone})")
    call("hero_audit", someone)
    section("Rebuilding the read tables from the event store (manage.py hero_rebuild)")
    call("hero_rebuild")
    section("Verifying them against the store (manage.py hero_verify)")
    call("hero_verify")
    section("Next")
    print(f"Done in {time.monotonic() - started:.0f}s. Browse it:")
    print("    .venv/bin/python example/manage.py runserver")
    print("    http://127.0.0.1:8000/achievements/  (sign in as demo0001 / demo)")
    print("    http://127.0.0.1:8000/admin/         (admin / admin)")


def section(title: str) -> None:
    print(f"\n== {title}")


def call(command: str, *args: str) -> None:
    from django.core.management import call_command

    call_command(command, *args)


def prepare_database() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("hero_status")


def create_users(count: int) -> list[Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    User = get_user_model()
    password = make_password("demo")
    wanted = [f"demo{n:04d}" for n in range(1, count + 1)]
    existing = set(
        User.objects.filter(username__in=wanted).values_list("username", flat=True)
    )
    User.objects.bulk_create(
        [
            User(username=name, password=password)
            for name in wanted
            if name not in existing
        ]
    )
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", password="admin")
    print(
        f"{len(wanted) - len(existing)} users created, {len(existing)} already there."
    )
    return list(User.objects.filter(username__in=wanted).order_by("username"))


def simulate(users: list[Any]) -> tuple[int, int]:
    """Each user posts comments, earns points, reads articles and browses,
    the same way on every run (a seeded random generator)."""
    from tqdm import tqdm

    import hero

    unlock = hero.achievements.unlock
    rng = random.Random(SEED)
    calls = changes = 0
    for user in tqdm(users, unit="user", disable=not sys.stdout.isatty()):
        activity = rng.random()  # some users are far more active than others
        comments = points = articles = 0
        for _ in range(int(5 + activity**3 * 120)):
            kind = rng.random()
            if kind < 0.4:
                comments += 1
                hour = rng.randrange(24) if rng.random() < 0.2 else rng.randrange(8, 23)
                changes += len(
                    unlock("comment_posted", user=user, comments=comments, hour=hour)
                )
                points += 10
            elif kind < 0.7:
                points += rng.choice((5, 25, 100, 400, 1_000))
                changes += len(unlock("points_awarded", user=user, points=points))
            elif kind < 0.9:
                articles += 1
                changes += len(unlock("article_read", user=user, articles=articles))
            else:
                path = "/hidden/" if rng.random() < 0.05 else "/"
                changes += len(unlock("page_viewed", user=user, path=path))
            calls += 1
    return calls, changes


def telling_user(users: list[Any]) -> str:
    """A user whose history is short but shows unlocks, an upgrade and progress."""
    from django.db.models import Count, Q

    from hero.models import LedgerEntry

    candidates = (
        LedgerEntry.objects.filter(user__in=users)
        .values("user__username")
        .annotate(
            entries=Count("position"),
            upgrades=Count("position", filter=Q(kind="upgraded")),
            progress=Count("position", filter=Q(kind="progressed")),
        )
        .filter(entries__lte=14, upgrades__gte=1, progress__gte=1)
        .order_by("-upgrades", "user__username")
    )
    first = candidates.first()
    return str(first["user__username"]) if first else str(users[0].username)


def report_rarity() -> None:
    from hero.conf import conf
    from hero.models import Achievement, AchievementCount

    names = dict(conf.ACHIEVEMENT_LEVELS)
    counts: dict[str, dict[int, int]] = {}
    for achievement_id, level, holders in AchievementCount.objects.values_list(
        "achievement_id", "level", "holders"
    ):
        counts.setdefault(achievement_id, {})[level] = holders
    print(f"{'achievement':<14} {'level':<10} {'holders':>8} {'at or above':>12}")
    for achievement in Achievement.objects.listed():
        for level in sorted(counts.get(achievement.id, {}) or {1: 0}):
            rarity = Achievement.objects.rarity(achievement.id, level)
            held = counts.get(achievement.id, {}).get(level, 0)
            label = f"{level} {names.get(level, '')}".strip()
            flags = (
                " (secret)"
                if achievement.secret
                else " (invisible)"
                if achievement.invisible
                else ""
            )
            print(
                f"{achievement.id:<14} {label:<10} {held:>8} {rarity.percent:>11.1f}%{flags}"
            )


if __name__ == "__main__":
    main()

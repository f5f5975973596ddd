from __future__ import annotations

import json
from datetime import datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hero.audit import HistoryEntry, history, known_achievement_ids, levels
from hero.conf import conf
from hero.exceptions import UnknownAchievement
from hero.management.base import TranslatedCommand
from hero.validation import aware, check_achievement_id, check_argument


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Show a user's achievement history, read from the event store. USER is a "
        "pk or a username."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", metavar="USER")
        parser.add_argument(
            "--achievement", metavar="ID", help=_("Only this achievement.")
        )
        parser.add_argument(
            "--as-of",
            metavar="DATETIME",
            help=_(
                "History up to, and levels held at, this moment (ISO 8601; a date "
                "means its end; without an offset, the current time zone)."
            ),
        )
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help=_("Print a table (the default) or JSON."),
        )

    def handle(
        self,
        *args: Any,
        user: str,
        achievement: str | None,
        as_of: str | None,
        format: str,
        **options: Any,
    ) -> None:
        check_argument("USER", user)
        if achievement is not None:
            try:
                check_achievement_id(achievement)
            except UnknownAchievement as error:
                raise CommandError(f"--achievement: {error}") from None
        if as_of is not None:
            check_argument("--as-of", as_of)
        found = self._user(user)
        if achievement and achievement not in known_achievement_ids(conf.HERO_DATABASE):
            raise CommandError(f"No achievement has id {achievement!r}.")
        moment = self._moment(as_of) if as_of else None
        entries = [
            e
            for e in history(str(found.pk), achievement)
            if moment is None or (e.occurred_at is not None and e.occurred_at <= moment)
        ]
        held = levels(str(found.pk), moment)
        if achievement:
            held = {k: v for k, v in held.items() if k == achievement}
        if format == "json":
            self.stdout.write(
                json.dumps(
                    {
                        "user": {"pk": found.pk, "username": found.get_username()},
                        "achievement": achievement,
                        "as_of": moment.isoformat() if moment else None,
                        "levels": held,
                        "history": [e.as_dict() for e in entries],
                    },
                    indent=2,
                    sort_keys=True,
                    default=str,
                )
            )
            return
        self._table(found, entries, held, moment)

    def _user(self, value: str) -> Any:
        model = get_user_model()
        manager = model._default_manager.db_manager(conf.HERO_DATABASE)
        user = manager.filter(**{model.USERNAME_FIELD: value}).first()
        if user is None:
            try:
                user = manager.filter(pk=value).first()
            except (ValueError, TypeError):
                user = None
        if user is None:
            raise CommandError(f"No user has the pk or username {value!r}.")
        return user

    @staticmethod
    def _moment(value: str) -> datetime:
        try:
            day = parse_date(value)  # a date alone means the end of that day
            moment = datetime.combine(day, time.max) if day else parse_datetime(value)
        except ValueError:
            moment = None
        if moment is None:
            raise CommandError(
                f"--as-of {value!r} is not a date or datetime; use ISO 8601, "
                "e.g. 2026-03-01 or 2026-03-01T12:00:00+00:00."
            )
        return aware(moment)

    def _table(
        self,
        user: Any,
        entries: list[HistoryEntry],
        held: dict[str, int],
        moment: datetime | None,
    ) -> None:
        names = dict(conf.ACHIEVEMENT_LEVELS)
        when = f" as of {moment.isoformat()}" if moment else ""
        self.stdout.write(f"History of {user.get_username()} (pk {user.pk}){when}")
        if not entries:
            self.stdout.write("  (no events)")
        if any(e.kind == "forgotten" for e in entries):
            self.stdout.write(
                "  This user was forgotten: the events before are kept, anonymised."
            )
        header = (
            f"{'position':>9}  {'occurred at':<25} {'kind':<10} {'achievement':<20} "
            f"{'level':<9} event / details"
        )
        if entries:
            self.stdout.write(header)
            self.stdout.write("-" * len(header))
        for e in entries:
            level = ""
            if e.kind == "repeated":
                level = f"{e.previous_level}+{e.level}"
            elif e.kind in ("unlocked", "upgraded", "granted"):
                level = (
                    f"{e.previous_level}->{e.level}"
                    if e.previous_level
                    else str(e.level)
                )
            elif e.kind == "revoked":
                level = f"{e.previous_level}->{e.level or '-'}"
            elif e.kind == "progressed":
                level = f"{e.steps}/{e.total}"
            elif e.kind == "forgotten":
                level = f"{e.previous_level or '-'}->-"
            details = e.event
            if e.kind == "forgotten":
                details = "the user was forgotten: what the site passed is erased"
            elif e.forgotten:
                details = f"{details} (forgotten)".lstrip()
            elif e.kind in ("revoked", "granted"):
                details = f"reason: {e.reason}" + (f"; by {e.actor}" if e.actor else "")
            elif e.state:
                details += " " + json.dumps(e.state, sort_keys=True, default=str)
            if e.key is not None:
                details = f"key {e.key}; {details}"
            occurred = (
                e.occurred_at.isoformat(timespec="seconds") if e.occurred_at else ""
            )
            self.stdout.write(
                f"{e.position:>9}  {occurred:<25} {e.kind:<10} {e.achievement_id or '':<20} "
                f"{level:<9} {details}".rstrip()
            )
        self.stdout.write(f"Holds{when}:")
        if not held:
            self.stdout.write("  nothing")
        for achievement_id, held_level in sorted(held.items()):
            name = names.get(held_level, f"Level {held_level}")
            self.stdout.write(f"  {achievement_id}: level {held_level} ({name})")

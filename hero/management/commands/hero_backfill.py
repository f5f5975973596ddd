from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hero.backfill import backfill, source_of
from hero.conf import conf
from hero.exceptions import HeroError
from hero.management.base import TranslatedCommand
from hero.management.progress import ProgressReporter
from hero.registry import registry
from hero.validation import check_achievement_id, check_batch_size


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Award an achievement retroactively: from its backfill() method, or by "
        "replaying the trigger log through its unlock(). Awards are events whose "
        "trigger is 'backfill'; running it again adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("achievement_id", metavar="ACHIEVEMENT_ID")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_(
                "Show how many users would be awarded at each level; write nothing."
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help=_("Candidates per transaction (default 500)."),
        )

    def handle(
        self,
        *args: Any,
        achievement_id: str,
        dry_run: bool,
        batch_size: int,
        **options: Any,
    ) -> None:
        try:
            check_batch_size(batch_size)
        except HeroError as error:
            raise CommandError(f"--batch-size: {error}") from None
        try:
            check_achievement_id(achievement_id)
            achievement = registry.get(achievement_id)
        except HeroError as error:
            raise CommandError(str(error)) from None
        levels = dict(conf.ACHIEVEMENT_LEVELS)
        progress = ProgressReporter(
            self.stdout,
            interactive=self.stdout.isatty(),
            label="Backfilling",
            unit="candidate",
        )
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}backfilling {achievement_id!r} "
            f"from {source_of(achievement)}."
        )
        progress.start(None, 0)  # how many candidates there are is not known ahead
        try:
            result = backfill(
                achievement,
                dry_run=dry_run,
                batch_size=batch_size,
                on_batch=progress.advance,
            )
        except HeroError as error:  # nothing of the batch in which it arose is written
            raise CommandError(str(error)) from None
        finally:
            progress.close()
        verb = "would be awarded" if dry_run else "awarded"
        if not result.levels and not result.completed_progress:
            self.stdout.write(f"No user {verb} anything ({result.examined} examined).")
        for level, count in sorted(result.levels.items()):
            name = levels.get(level, f"Level {level}")
            self.stdout.write(f"  level {level} ({name}): {count} {verb}")
        if result.sample:
            sample = ", ".join(f"user {u} at {lv}" for u, lv in result.sample)
            self.stdout.write(f"  for example: {sample}")
        if result.skipped_users:
            self.stdout.write(f"  skipped {result.skipped_users} (no such user)")
        if result.skipped_revoked:
            self.stdout.write(
                f"  skipped {result.skipped_revoked} (revoked from the user before)"
            )
        if dry_run:
            self.stdout.write("Nothing was written.")
        else:
            users = len(result.users)
            self.stdout.write(
                self.style.SUCCESS(f"{users} user{'' if users == 1 else 's'} {verb}.")
            )

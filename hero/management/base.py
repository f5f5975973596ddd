"""The base of hero's management commands: their help in the active language."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandParser

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise


class TranslatedCommand(BaseCommand):
    """A command whose ``help`` is a lazy translation.

    argparse formats its description with regular expressions, which take only
    real strings, so the help is turned into text in the active language when
    the parser is made (``manage.py help`` and every run).
    """

    # The stubs say str; a lazy translation is what the commands set.
    help: _StrOrPromise = ""  # type: ignore[assignment]

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> CommandParser:
        self.help = str(self.help)
        return super().create_parser(prog_name, subcommand, **kwargs)

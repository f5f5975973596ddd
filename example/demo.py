#!/usr/bin/env python3
"""hero's demo: set up the demo project's database and show the event store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        help="database to run on (default: SQLite in example/demo.sqlite3)",
    )
    args = parser.parse_args()
    if args.database_url:
        os.environ["HERO_DEMO_DATABASE_URL"] = args.database_url
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("hero_status")
    print("\nBrowse it: python example/manage.py runserver")


if __name__ == "__main__":
    main()

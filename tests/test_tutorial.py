"""docs/tutorial.md works as written: its commands and files, in a fresh directory.

The commands of its ``bash`` blocks run in order (with this test run's Python,
in which hero is installed already: the virtualenv and ``pip install`` lines
are left out, and ``runserver`` is replaced by Django's test client). A block
announced by ``<!-- file: PATH -->`` is written to PATH, or appended to it when
the marker says ``(append)``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(
    r"(?:<!-- file: (?P<path>\S+)(?P<append> \(append\))? -->\n(?:<!--.*?-->\n)*)?"
    r"```(?P<lang>\w+)\n(?P<body>.*?)```",
    re.S,
)
LEFT_OUT = (
    "python3 -m venv",
    ". .venv/bin/activate",
    "pip install",
    "python manage.py runserver",
)

# What step 6 asks the reader to do in a browser, done with Django's test client.
SEE_IT = """
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
client = Client()
page = client.get("/achievements/")
assert page.status_code == 302 and page["Location"].startswith("/accounts/login/"), page
page = client.post(
    page["Location"], {"username": "ann", "password": "change-me"}, follow=True
)
assert page.redirect_chain[-1][0] == "/achievements/", page.redirect_chain
assert "Welcome aboard" in page.content.decode(), page.content.decode()
print("seen")
"""


def steps() -> list[tuple[str, str, str, bool]]:
    """(kind, target, text, append) for each block of the tutorial, in order."""
    found = []
    for match in BLOCK.finditer(TUTORIAL.read_text()):
        if match["path"]:
            found.append(("file", match["path"], match["body"], bool(match["append"])))
        elif match["lang"] == "bash":
            for line in match["body"].splitlines():
                if line.strip() and not line.startswith(LEFT_OUT):
                    found.append(("command", line, "", False))
    return found


def run(line: str, cwd: Path) -> str:
    words = shlex.split(line)
    env = dict(os.environ, PYTHONPATH="")
    while "=" in words[0]:  # VAR=value before the command
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if words[0] == "django-admin":
        words = [sys.executable, "-m", "django", *words[1:]]
    elif words[0] == "python":
        words = [sys.executable, *words[1:]]
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        words, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_tutorial_works_as_written(tmp_path: Path) -> None:
    # Arrange: the tutorial's steps.
    todo = steps()
    assert [kind for kind, *_ in todo].count("file") == 6, todo

    # Act: each step, in a fresh directory.
    for kind, target, text, append in todo:
        if kind == "command":
            run(target, tmp_path)
            continue
        path = tmp_path / target
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as file:
            file.write(("\n" if append else "") + text)

    # Assert: what step 6 promises, the award in the store's history, and a
    # project whose checks (hero's among them) find nothing to warn about.
    assert "seen" in run(f"python manage.py shell -c {shlex.quote(SEE_IT)}", tmp_path)
    assert "no issues" in run("python manage.py check", tmp_path)
    assert "welcome" in run("python manage.py hero_audit ann", tmp_path)

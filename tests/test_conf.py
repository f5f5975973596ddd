"""Every setting hero reads is documented in docs/reference/settings.md, with
the default hero applies when it is not set."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from hero.conf import Settings, cached, conf

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "settings.md"


def documented() -> dict[str, str]:
    """Each setting's heading on the page, with its ``Default:`` line's value."""
    found = re.findall(r"^### `(\w+)`\n\nDefault: `([^`]*)`", PAGE.read_text(), re.M)
    return dict(found)


def read() -> list[str]:
    """The settings hero reads: the properties of its one settings reader."""
    return sorted(
        name
        for name, value in vars(Settings).items()
        if isinstance(value, cached) and name.isupper()
    )


def test_every_setting_is_documented_once_with_its_default() -> None:
    assert sorted(documented()) == read()


@pytest.mark.parametrize("name", read())
def test_the_documented_default_is_the_one_hero_applies(
    name: str, settings: Any
) -> None:
    # Arrange: the setting is not set (the test settings set none of hero's).
    if hasattr(settings, name):
        delattr(settings, name)

    # Act: read it the way hero does.
    value = getattr(conf, name)

    # Assert: the page's default, as a Python value, is what hero uses.
    assert value == ast.literal_eval(documented()[name])

"""The distributions hero releases: what the wheel and the sdist hold, and that
PyPI would take them (``twine check``)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.mark.slow
def test_the_wheel_holds_everything_a_site_needs(
    distributions: dict[str, Path],
) -> None:
    names = set(zipfile.ZipFile(distributions["wheel"]).namelist())
    wanted = [
        "hero/py.typed",
        "hero/templates/hero/achievement_list.html",
        "hero/templates/hero/admin/confirm.html",
        "hero/static/achievements/images/default-locked.jpg",
        "hero/locale/nl/LC_MESSAGES/django.mo",
        "hero/locale/de/LC_MESSAGES/django.mo",
        "hero/migrations/0001_initial.py",
        "hero/store/ordering.py",
    ]
    missing = [name for name in wanted if name not in names]
    assert missing == []
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


@pytest.mark.slow
def test_the_sdist_holds_the_package_and_its_license_but_no_tests(
    distributions: dict[str, Path],
) -> None:
    with tarfile.open(distributions["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= names
    assert "hero/locale/de/LC_MESSAGES/django.po" in names
    assert not any(
        name.startswith(("tests/", "benchmarks/", "example/")) for name in names
    )


@pytest.mark.slow
def test_pypi_would_take_them(distributions: dict[str, Path]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            *map(str, distributions.values()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

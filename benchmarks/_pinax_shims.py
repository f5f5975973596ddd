"""Let pinax-badges 3.0.0 import on Django 4+ and on setuptools without pkg_resources.

pinax-badges 3.0.0 (the newest release on PyPI) predates Django 4 and uses
three names that have since gone away:

* ``django.utils.translation.ugettext_lazy`` (removed in Django 4.0), imported
  by ``pinax/badges/apps.py``; here it becomes an alias of ``gettext_lazy``.
* ``Signal(providing_args=[...])`` (the argument was removed in Django 4.0),
  used by ``pinax/badges/signals.py``; here ``django.dispatch.Signal`` is
  replaced by a subclass that accepts the argument and ignores it.
* ``pkg_resources`` (removed from setuptools in 82.0), imported by
  ``pinax/badges/__init__.py`` only for ``get_distribution(...).version``;
  when it is missing, a stand-in module answering that one call from
  ``importlib.metadata`` is registered.

Call :func:`apply` before ``django.setup()`` (which imports pinax's app config).
The patches are process-wide and meant for the benchmark only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings
from typing import Any


def _alias_ugettext_lazy() -> None:
    from django.utils import translation

    if not hasattr(translation, "ugettext_lazy"):
        translation.ugettext_lazy = translation.gettext_lazy


def _accept_providing_args() -> None:
    import django.dispatch

    original = django.dispatch.Signal
    if getattr(original, "accepts_providing_args", False):
        return

    class Signal(original):  # type: ignore[valid-type, misc]
        """``django.dispatch.Signal`` that accepts and drops ``providing_args``."""

        accepts_providing_args = True

        def __init__(self, providing_args: Any = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    django.dispatch.Signal = Signal


class _Distribution:
    def __init__(self, name: str) -> None:
        self.project_name = name
        self.version = importlib.metadata.version(name)


def _provide_pkg_resources() -> None:
    if "pkg_resources" in sys.modules:
        return
    if importlib.util.find_spec("pkg_resources") is not None:
        # Import it now, quietly: recent setuptools warns that it is deprecated.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pkg_resources  # noqa: F401
        return
    module = types.ModuleType("pkg_resources")
    module.get_distribution = _Distribution  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = module


def apply() -> None:
    """Install the three shims; calling it again does nothing more."""
    _alias_ugettext_lazy()
    _accept_providing_args()
    _provide_pkg_resources()

"""Let pinax-badges 3.0.0 import on Django 4+ and on setuptools without pkg_resources.

It uses three names since gone: ``ugettext_lazy`` (here an alias of
``gettext_lazy``), ``Signal(providing_args=...)`` (here accepted and ignored)
and ``pkg_resources`` (here, when missing, a stand-in for the one call pinax
makes). :func:`apply` before ``django.setup()``; for the benchmark's process only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings
from typing import Any


class _Distribution:
    def __init__(self, name: str) -> None:
        self.project_name = name
        self.version = importlib.metadata.version(name)


def apply() -> None:
    """Install the three shims; calling it again does nothing more."""
    import django.dispatch
    from django.utils import translation

    if not hasattr(translation, "ugettext_lazy"):
        translation.ugettext_lazy = translation.gettext_lazy

    original = django.dispatch.Signal
    if not getattr(original, "accepts_providing_args", False):

        class Signal(original):  # type: ignore[valid-type, misc]
            """``django.dispatch.Signal`` that accepts and drops ``providing_args``."""

            accepts_providing_args = True

            def __init__(self, providing_args: Any = None, **kwargs: Any) -> None:
                super().__init__(**kwargs)

        django.dispatch.Signal = Signal

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

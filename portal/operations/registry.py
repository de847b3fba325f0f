"""The registry of runners: which class runs which kind of operation."""

import importlib

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

from ..choices import Verb
from .config import get_config
from .exceptions import UnknownOperationKind

__all__ = ["autodiscover", "get_runner", "load_modules", "register", "registered_kinds"]


_registry = {}
_discovered = False


def register(cls):
    """Register the runner class ``cls`` under its ``kind`` (class decorator)."""
    if not cls.kind or not cls.verb:
        raise ImproperlyConfigured(f"{cls.__qualname__} needs a kind and a verb.")
    Verb(cls.verb)
    if cls.queue not in ("default", "long"):
        raise ImproperlyConfigured(f"{cls.__qualname__}.queue must be default or long.")
    existing = _registry.get(cls.kind)
    if existing is not None and (existing.__module__, existing.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ImproperlyConfigured(
            f"Operation kind {cls.kind!r} is registered twice: by "
            f"{existing.__module__}.{existing.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}."
        )
    _registry[cls.kind] = cls
    return cls


def autodiscover():
    """Import every app's ``jobs`` module and the configured runner modules."""
    global _discovered
    autodiscover_modules("jobs")
    load_modules(get_config()["RUNNER_MODULES"])
    _discovered = True


def get_runner(kind):
    """Return the runner class registered for ``kind``."""
    if kind not in _registry and not _discovered:
        autodiscover()
    try:
        return _registry[kind]
    except KeyError:
        raise UnknownOperationKind(f"No operation kind {kind!r}.") from None


def registered_kinds():
    """Return the registered kinds, sorted."""
    if not _discovered:
        autodiscover()
    return sorted(_registry)


def load_modules(paths):
    """Import the dotted modules ``paths`` (runners kept outside ``jobs``)."""
    for path in paths:
        importlib.import_module(path)

"""Configuration files next to ``stacks.yaml`` that other apps own.

``backup-strategies.yaml`` belongs to the backups app and
``retention-policies.yaml`` to the retention app; both build on stacks, so
stacks cannot import them. Each registers a :class:`Companion` in its
``AppConfig.ready()``, and :func:`stacks.config.sync.import_configs` checks
(and imports) every registered companion with the stacks file, in one
transaction, with one report.
"""

from dataclasses import dataclass
from typing import Any

__all__ = ["Companion", "companions", "register_companion"]


@dataclass(frozen=True)
class Companion:
    """A configuration file owned by another app.

    Attributes:
        filename: its name next to ``stacks.yaml``.
        check: ``check(document, file, parsed)`` returns the issues of the
            loaded ``document`` (``file`` names it in issues; ``parsed`` is
            the checked :class:`~stacks.schema.parser.StacksConfig`).
        importer: ``importer(document, file, parsed, report, prune)``
            returns an object with ``plan()`` (read only: fills the report)
            and ``write()``; None when the file is only checked.
        exporter: ``exporter()`` returns the file's document from the
            database; None when there is nothing to export.
    """

    filename: str
    check: Any
    importer: Any = None
    exporter: Any = None


_registry = {}


def register_companion(companion):
    """Register ``companion`` (once per file name; a new one replaces it)."""
    _registry[companion.filename] = companion
    return companion


def companions():
    """Return the registered companions, by file name."""
    return [_registry[name] for name in sorted(_registry)]

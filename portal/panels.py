"""Panels of other apps on the environment page, one registry.

The environment page belongs to ``stacks``, which knows no feature app.
An app that has something to say there (backups: overdue and unproven
backups) registers a panel in its ``AppConfig.ready()`` with
:func:`register_panel`: a function ``panel(environment, user)`` that
returns ``None`` (nothing to show) or a :class:`Panel`, a template and its
context. The page renders every panel in the order of their names.
"""

from dataclasses import dataclass, field

__all__ = ["Panel", "environment_panels", "register_panel"]

_panels = {}


@dataclass(frozen=True)
class Panel:
    """A template included in the environment page, with its context."""

    template: str
    context: dict = field(default_factory=dict)


def register_panel(name, panel):
    """Register ``panel(environment, user)`` under ``name`` (a new one
    replaces it)."""
    _panels[name] = panel
    return panel


def environment_panels(environment, user):
    """Return the :class:`Panel` of every registered panel that has one."""
    panels = []
    for name in sorted(_panels):
        found = _panels[name](environment, user)
        if found is not None:
            panels.append(found)
    return panels

"""Panels of other apps on shared pages, one registry.

The environment page belongs to ``stacks`` and the dashboard to the core;
neither knows the feature apps. An app that has something to say there
(backups: overdue and unproven backups; GPUs, approvals...) registers a
panel in its ``AppConfig.ready()`` with :func:`register_panel`: a function
that returns ``None`` (nothing to show) or a :class:`Panel`, a template and
its context.

========== ================================== ================================
page       the panel function is called as    shown
========== ================================== ================================
environment ``panel(environment, user)``      under the environment's status
dashboard  ``panel(user, environments)``      on the dashboard; environments
                                              are those the user may view
========== ================================== ================================

Pages render their panels by ``order``, then name.
"""

from dataclasses import dataclass, field

__all__ = [
    "PAGES",
    "Panel",
    "dashboard_panels",
    "environment_panels",
    "register_panel",
]

#: The pages that take panels.
PAGES = ("environment", "dashboard")

_panels = {page: {} for page in PAGES}


@dataclass(frozen=True)
class Panel:
    """A template included in a page, with its context."""

    template: str
    context: dict = field(default_factory=dict)


def register_panel(name, panel, *, page="environment", order=50):
    """Register ``panel`` under ``name`` on ``page`` (a new one replaces it)."""
    if page not in _panels:
        raise ValueError(f"No page {page!r} takes panels (one of {PAGES}).")
    _panels[page][name] = (order, panel)
    return panel


def _collect(page, *args):
    found = []
    for _name, (_order, panel) in sorted(
        _panels[page].items(), key=lambda item: (item[1][0], item[0])
    ):
        result = panel(*args)
        if result is not None:
            found.append(result)
    return found


def environment_panels(environment, user):
    """Return the :class:`Panel` of every environment-page panel that has one."""
    return _collect("environment", environment, user)


def dashboard_panels(user, environments):
    """Return the :class:`Panel` of every dashboard panel that has one."""
    return _collect("dashboard", user, list(environments))

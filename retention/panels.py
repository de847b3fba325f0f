"""The retention panel of the environment page (``portal.panels``)."""

from portal.panels import Panel

from .status import retention_summary

__all__ = ["retention_panel"]


def retention_panel(environment, user):
    """Return the panel: the next cleanup, the last one and what it freed;
    None when no policy applies to the environment."""
    summary = retention_summary(environment)
    if summary is None:
        return None
    return Panel("retention/panel.html", {"environment": environment, **summary})

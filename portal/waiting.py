"""The dashboard's panel of operations waiting for the user's approval."""

from .operations import waiting_for
from .panels import Panel

__all__ = ["approvals_panel"]


def approvals_panel(user, environments):
    """Return the panel of operations waiting for ``user``'s approval, or
    None when nothing waits for them."""
    waiting = waiting_for(user)
    if not waiting:
        return None
    return Panel("portal/dashboard_approvals.html", {"waiting": waiting})

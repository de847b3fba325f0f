"""The site's navigation, one registry.

The layout (``templates/base.html``) belongs to the core, which knows no
feature app. Each app adds its entries in its ``AppConfig.ready()`` with
:func:`register_nav`: a label, a URL name, an order and who sees it. The
context processor :func:`context` gives every page ``nav_items``, the
entries the signed-in user may see, the current one marked. Entries of
other apps (GPU, approvals, backups) slot in by order without touching the
layout.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

__all__ = ["NavItem", "context", "nav_items", "register_nav"]

_items = {}


def signed_in(user):
    """Show an entry to every signed-in user."""
    return bool(user and user.is_authenticated)


def staff(user):
    """Show an entry to staff users (the Django admin lets them in)."""
    return signed_in(user) and user.is_staff


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation."""

    name: str
    label: str
    url_name: str
    order: int = 50
    visible: Callable = signed_in
    # Path prefixes that mark the entry current besides its own URL.
    prefixes: tuple = ()


def register_nav(name, label, url_name, *, order=50, visible=None, prefixes=()):
    """Add (or replace) the navigation entry ``name``; return it.

    Args:
        url_name: what ``reverse()`` takes (``"portal:operation_list"``).
        order: entries are shown by order, then name.
        visible: ``visible(user) -> bool``; default: signed-in users.
        prefixes: other path prefixes under which the entry is current.
    """
    item = NavItem(name, label, url_name, order, visible or signed_in, tuple(prefixes))
    _items[name] = item
    return item


def nav_items(request):
    """Return the entries ``request.user`` may see: name, label, url, current."""
    user = getattr(request, "user", None)
    path = getattr(request, "path", "")
    shown = []
    for item in sorted(_items.values(), key=lambda i: (i.order, i.name)):
        if not item.visible(user):
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        prefixes = (url, *item.prefixes) if url != "/" else item.prefixes
        current = path == url or any(path.startswith(p) for p in prefixes)
        shown.append(
            {"name": item.name, "label": item.label, "url": url, "current": current}
        )
    return shown


def context(request):
    """Template context processor: ``nav_items`` for the layout."""
    return {"nav_items": lambda: nav_items(request)}

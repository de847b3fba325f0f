"""Notifications: a mail through Django's mail backend and a JSON webhook.

Features call :func:`notify` with an event name, a subject, a text and the
event's data; where it goes (addresses, a webhook URL) is the caller's
configuration. Each channel is tried independently and a failure of one
never raises: the returned :class:`Delivery` says what went out and what
failed, so the caller can record it. Webhook URLs often carry a token: they
are never logged or returned, only their host.

The webhook receives a POST with ``Content-Type: application/json``::

    {"event": "backup.overdue", "subject": "...", "text": "...",
     "data": {...}, "sent": "2026-01-02T03:04:05Z"}
"""

import json
import logging
import string
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

__all__ = ["Delivery", "fill", "notify"]

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 10


@dataclass
class Delivery:
    """What one notification reached."""

    sent: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.errors

    def summary(self):
        parts = [f"sent by {', '.join(self.sent)}"] if self.sent else []
        parts += self.errors
        return "; ".join(parts) or "no channel configured"


class _Fields(dict):
    def __missing__(self, key):
        return "-"


def fill(template, fields):
    """Return ``template`` with ``{name}`` fields replaced; an unknown field
    reads ``-``, and a malformed template is returned as it is."""
    try:
        return string.Formatter().vformat(str(template), (), _Fields(fields))
    except (ValueError, IndexError, AttributeError):
        return str(template)


def _host(url):
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def notify(event, subject, text, *, data=None, emails=(), webhook_url=""):
    """Send one notification by mail (to ``emails``) and to ``webhook_url``.

    Returns a :class:`Delivery`; nothing raises.
    """
    delivery = Delivery()
    emails = [e for e in ([emails] if isinstance(emails, str) else emails) if e]
    if emails:
        try:
            send_mail(
                subject,
                text,
                settings.DEFAULT_FROM_EMAIL,
                emails,
                fail_silently=False,
            )
            delivery.sent.append(f"mail to {', '.join(emails)}")
        except Exception as exc:  # noqa: BLE001  (any backend's failure)
            delivery.errors.append(f"mail to {', '.join(emails)} failed: {exc}")
    if webhook_url:
        host = _host(webhook_url)
        body = json.dumps(
            {
                "event": event,
                "subject": subject,
                "text": text,
                "data": data or {},
                "sent": timezone.now().isoformat().replace("+00:00", "Z"),
            },
            sort_keys=True,
            default=str,
        ).encode()
        request = urllib.request.Request(
            webhook_url,
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            if urlsplit(webhook_url).scheme not in ("http", "https"):
                raise ValueError("not an http(s) URL")
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as answer:
                answer.read(1024)
            delivery.sent.append(f"webhook at {host}")
        except urllib.error.HTTPError as exc:
            delivery.errors.append(f"webhook at {host} answered {exc.code}")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            delivery.errors.append(f"webhook at {host} failed: {reason}")
    for error in delivery.errors:
        logger.warning("Notification %s (%s): %s", event, subject, error)
    return delivery

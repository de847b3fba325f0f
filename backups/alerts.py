"""Backup-age alerts (RPO): one alert per breach, notified once.

A scheduled row of :func:`backups.status.backup_states` is *at risk* when
its newest proven or verified backup is older than the strategy's allowed
age, or missing. :func:`evaluate_alerts` compares that with the open
:class:`~backups.models.BackupAlert` rows: a new breach opens an alert and
sends one notification (``backup_overdue``); an open alert whose row is
no longer at risk is cleared and sends one more (``backup_overdue_cleared``).
Nothing is sent for a breach that stays open, however often it is
evaluated.

It runs after every backup, verification and restore drill of the
environment, on ``manage.py backup status``, and from cron (``backup
alerts --env E``, every 15 minutes), so a breach is noticed even when
nothing runs at all. Mail goes to ``global.notifications.email`` and the
webhook to ``global.notifications.webhook_url`` of backup-strategies.yaml
(a ``${VAR}`` reference there is resolved from the environment's
variables); ``enabled: false`` there records alerts without sending.
"""

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from portal.notify import fill, notify
from stacks.secrets import InvalidReference, MissingSecret, environ_for, resolve

from .models import BackupAlert, BackupConfigValue, StorageTier
from .status import backup_states, format_age

__all__ = [
    "TEMPLATES",
    "evaluate_alerts",
    "evaluate_after",
    "notification_settings",
    "page_url",
    "send",
]

logger = logging.getLogger(__name__)

#: The subject and text of each event when the file's ``notifications``
#: section has no template of that name.
TEMPLATES = {
    "backup_overdue": {
        "subject": "Backup overdue - {environment}/{service}",
        "template": (
            "The newest proven or verified backup of {service} ({strategy}) in "
            "the {tier} tier of {environment} is {age} old; {allowed} is "
            "allowed.\n\n{detail}\n\nBackups page: {url}\n"
        ),
    },
    "backup_overdue_cleared": {
        "subject": "Backup back in time - {environment}/{service}",
        "template": (
            "{service} ({strategy}) in the {tier} tier of {environment} has a "
            "proven or verified backup {age} old again (allowed {allowed}); "
            "the alert opened {opened} is cleared.\n\nBackups page: {url}\n"
        ),
    },
}


def _section(key):
    row = BackupConfigValue.objects.filter(key=key).first()
    return row.value if row is not None and isinstance(row.value, dict) else {}


def notification_settings(environment):
    """Return ``(enabled, emails, webhook_url)`` for ``environment``.

    References are resolved from the environment's variables; one that
    cannot be resolved leaves that channel out (and is logged by name).
    """
    conf = _section("global").get("notifications") or {}
    enabled = bool(conf.get("enabled", True))
    environ = environ_for(environment)
    values = {}
    for key in ("email", "webhook_url"):
        raw = conf.get(key) or ""
        try:
            values[key] = resolve(str(raw), environ, service="notifications")
        except (MissingSecret, InvalidReference) as exc:
            logger.warning("Notifications of %s: %s", environment.name, exc)
            values[key] = ""
    emails = values["email"]
    emails = [e.strip() for e in emails.split(",")] if isinstance(emails, str) else []
    return enabled, [e for e in emails if e], values["webhook_url"].strip()


def send(environment, event, fields, data):
    """Send ``event`` (a template name) for ``environment``; return the
    Delivery, or None when notifications are disabled."""
    enabled, emails, webhook_url = notification_settings(environment)
    if not enabled:
        return None
    templates = _section("notifications")
    template = templates.get(event) or TEMPLATES[event]
    subject = fill(template.get("subject", event), fields)
    text = fill(template.get("template", ""), fields)
    return notify(
        f"backup.{event}",
        subject,
        text,
        data=data,
        emails=emails,
        webhook_url=webhook_url,
    )


def page_url(environment):
    """Return the absolute URL of ``environment``'s backups page."""
    path = reverse("backups:environment_backups", args=[environment.name])
    return settings.PORTAL_BASE_URL.rstrip("/") + path


def _fields(environment, state, url):
    return {
        "environment": environment.name,
        "service": state.service,
        "strategy": state.strategy,
        "tier": state.tier,
        "age": format_age(state.assured_age) if state.assured else "never",
        "allowed": state.allowed_text,
        "detail": state.describe_risk(),
        "url": url,
    }


def _data(state):
    return {
        "environment": state.environment,
        "service": state.service,
        "strategy": state.strategy,
        "tier": state.tier,
        "assured_record": state.assured.pk if state.assured else None,
        "assured_age_seconds": (
            int(state.assured_age.total_seconds()) if state.assured else None
        ),
        "allowed_age_seconds": int(state.allowed_age.total_seconds()),
    }


def evaluate_alerts(environment, *, now=None, url=None):
    """Open and clear ``environment``'s alerts; notify each change once.

    Returns ``(opened, cleared)``, lists of :class:`BackupAlert`.
    """
    now = now or timezone.now()
    url = url if url is not None else page_url(environment)
    tiers = {t.name: t for t in StorageTier.objects.all()}
    states = {
        (s.service, s.strategy, s.tier): s
        for s in backup_states([environment], now=now)
        if s.scheduled
    }
    open_alerts = {
        (a.service_name, a.strategy, a.tier.name): a
        for a in BackupAlert.objects.filter(
            environment=environment, cleared__isnull=True
        ).select_related("tier")
    }
    opened, cleared = [], []
    for key, state in states.items():
        if not state.at_risk or key in open_alerts or key[2] not in tiers:
            continue
        try:
            with transaction.atomic():
                alert = BackupAlert.objects.create(
                    environment=environment,
                    service_name=state.service,
                    strategy=state.strategy,
                    tier=tiers[key[2]],
                    message=state.describe_risk(),
                    opened=now,
                )
        except IntegrityError:
            continue  # another process opened it a moment ago
        opened.append((alert, state))
    for key, alert in open_alerts.items():
        state = states.get(key)
        if state is not None and state.at_risk:
            continue
        # Clear it only if it is still open: two evaluations never both do.
        if not BackupAlert.objects.filter(pk=alert.pk, cleared__isnull=True).update(
            cleared=now
        ):
            continue
        alert.cleared = now
        cleared.append((alert, state))
    for alert, state in opened:
        delivery = send(
            environment,
            "backup_overdue",
            _fields(environment, state, url),
            _data(state),
        )
        _record_delivery(alert, "notified", delivery, now)
    for alert, state in cleared:
        if state is None:
            continue  # the row is gone (service or tier removed): nothing to say
        fields = {
            **_fields(environment, state, url),
            "opened": f"{timezone.localtime(alert.opened):%Y-%m-%d %H:%M}",
        }
        delivery = send(environment, "backup_overdue_cleared", fields, _data(state))
        _record_delivery(alert, "cleared_notified", delivery, now)
    return [a for a, _s in opened], [a for a, _s in cleared]


def _record_delivery(alert, field, delivery, now):
    if delivery is None:
        return
    values = {field: now}
    if not delivery.ok:
        values["message"] = f"{alert.message}\nNotification: {delivery.summary()}"
    BackupAlert.objects.filter(pk=alert.pk).update(**values)
    for key, value in values.items():
        setattr(alert, key, value)


def evaluate_after(environment, log):
    """Evaluate the alerts at the end of an operation; say what changed in
    its log. A failure here never fails the operation."""
    try:
        opened, cleared = evaluate_alerts(environment)
    except Exception as exc:  # noqa: BLE001  (the operation's work is done)
        logger.exception("Backup alerts of %s", environment.name)
        log.warning(f"Backup alerts not evaluated: {exc}")
        return
    for alert in opened:
        log.warning(f"Backup alert opened: {alert.message.splitlines()[0]}")
    for alert in cleared:
        log.info(
            f"Backup alert cleared: {alert.service_name} {alert.strategy} in "
            f"{alert.tier.name}"
        )

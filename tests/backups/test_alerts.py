"""Backup-age alerts (RPO): one alert and one notification per breach, by
mail and to a real webhook on 127.0.0.1, cleared once by a verified backup;
the environment page, the backups page and /metrics say so."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from backups.alerts import evaluate_alerts
from backups.models import BackupAlert, BackupConfigValue, BackupStrategy
from portal.notify import fill
from tests.backups.records import *  # noqa: F403
from tests.backups.test_metrics import key, samples

pytestmark = pytest.mark.django_db


class Receiver(BaseHTTPRequestHandler):
    """Keep every JSON body POSTed; answer with the server's status."""

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        self.server.received.append(
            (self.headers["Content-Type"], json.loads(self.rfile.read(length)))
        )
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received, server.status = [], 204
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def configure(webhook_url, *, enabled=True, email="ops@example.org"):
    row, _created = BackupConfigValue.objects.get_or_create(
        key="global", defaults={"value": {}}
    )
    row.value = {
        **row.value,
        "notifications": {
            "enabled": enabled,
            "email": email,
            "webhook_url": webhook_url,
        },
    }
    row.save()


@pytest.fixture
def only_postgres(db):
    """Judge one service: the alerts of the others would only add noise."""
    BackupStrategy.objects.exclude(service="postgres").delete()


@pytest.fixture
def env(make_backup_environment, only_postgres):
    return make_backup_environment("alerts")


def webhook_url(server, path="/hook"):
    return f"http://127.0.0.1:{server.server_port}{path}"


def test_one_breach_one_alert_one_notification_and_one_clearing(
    env, make_record, webhook
):
    configure(webhook_url(webhook, "/hook?token=abc"))
    # A good backup two days old, verified: older than the allowed 1 d 06 h.
    make_record(env, age=timedelta(days=2), verified=timezone.now())

    opened, cleared = evaluate_alerts(env)
    assert len(opened) == 1 and cleared == []
    alert = BackupAlert.objects.get()
    assert (alert.service_name, alert.strategy, alert.tier.name) == (
        "postgres",
        "full",
        "local",
    )
    assert alert.message == (
        "postgres full in local: newest proven or verified backup 2 d 00 h old "
        "(allowed 1 d 06 h)"
    )
    assert alert.notified is not None and alert.cleared is None
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.org"]
    assert message.subject == f"Backup overdue - {env.name}/postgres"
    assert "is 2 d 00 h old; 1 d 06 h is allowed" in message.body
    assert f"/environments/{env.name}/backups/" in message.body
    ((content_type, body),) = webhook.received
    assert content_type == "application/json"
    assert body["event"] == "backup.backup_overdue"
    assert body["data"]["service"] == "postgres"
    assert body["data"]["allowed_age_seconds"] == 30 * 3600

    # Checked again and again: nothing new is sent.
    for _ in range(3):
        assert evaluate_alerts(env) == ([], [])
    assert len(mail.outbox) == 1 and len(webhook.received) == 1

    # A new backup that is not verified yet does not clear it...
    fresh = make_record(env, age=timedelta(hours=1))
    assert evaluate_alerts(env) == ([], [])
    # ...its verification does, once.
    fresh.verified = timezone.now()
    fresh.save()
    opened, cleared = evaluate_alerts(env)
    assert opened == [] and [a.pk for a in cleared] == [alert.pk]
    alert.refresh_from_db()
    assert alert.cleared is not None and alert.cleared_notified is not None
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == f"Backup back in time - {env.name}/postgres"
    assert webhook.received[1][1]["event"] == "backup.backup_overdue_cleared"
    assert evaluate_alerts(env) == ([], [])
    assert len(mail.outbox) == 2

    # A new breach is a new alert.
    fresh.verified = None
    fresh.created = timezone.now() - timedelta(days=3)
    fresh.save()
    opened, _cleared = evaluate_alerts(env)
    assert len(opened) == 1 and BackupAlert.objects.count() == 2
    assert len(mail.outbox) == 3


def test_a_backup_never_verified_is_a_breach_from_the_start(env, make_record, webhook):
    configure(webhook_url(webhook))
    make_record(env, age=timedelta(minutes=5))
    (alert,), _cleared = evaluate_alerts(env)
    assert alert.message == "postgres full in local: no proven or verified backup"


def test_disabled_notifications_record_the_alert_and_send_nothing(
    env, make_record, webhook
):
    configure(webhook_url(webhook), enabled=False)
    (alert,), _cleared = evaluate_alerts(env)
    assert alert.notified is None
    assert mail.outbox == [] and webhook.received == []


def test_a_failing_webhook_is_recorded_and_the_mail_still_goes(
    env, make_record, webhook
):
    webhook.status = 500
    configure(webhook_url(webhook, "/hook?token=secret-token"))
    (alert,), _cleared = evaluate_alerts(env)
    alert.refresh_from_db()
    assert len(mail.outbox) == 1
    assert alert.message.endswith(
        "Notification: sent by mail to ops@example.org; webhook at 127.0.0.1 "
        "answered 500"
    )
    # The URL's token is never written down.
    assert "secret-token" not in alert.message


def test_the_webhook_url_can_be_a_reference_to_the_environment(
    env, make_record, webhook
):
    configure("${ALERT_WEBHOOK_URL}")
    env.settings["variables"]["ALERT_WEBHOOK_URL"] = webhook_url(webhook)
    env.save()
    evaluate_alerts(env)
    assert len(webhook.received) == 1


def test_pages_and_metrics_say_so(client, env, make_record, make_user, settings):
    settings.PORTAL_METRICS_TOKEN = "token"
    configure("", email="")
    make_record(env, age=timedelta(days=2), verified=timezone.now())
    make_record(env, age=timedelta(hours=2))
    evaluate_alerts(env)
    client.force_login(make_user("viewer", "viewer", env))
    page = client.get(reverse("stacks:environment_detail", args=[env.name]))
    html = page.content.decode()
    assert 'data-panel="backups"' in html
    assert (
        "1 of 1 scheduled backups have no proven or verified backup within their "
        "allowed age (1 alert open)" in html
    )
    found = samples(
        client.get(reverse("portal:metrics"), HTTP_AUTHORIZATION="Bearer token")
    )
    assert found[key("portal_backup_rpo_breach", env)] == 1
    assert found[key("portal_backup_overdue", env)] == 0
    assert found[key("portal_backup_assured_age_seconds", env)] >= 2 * 86400


def test_templates_of_the_file_are_used(env, make_record):
    configure("")
    row, _created = BackupConfigValue.objects.get_or_create(
        key="notifications", defaults={"value": {}}
    )
    row.value = {
        **row.value,
        "backup_overdue": {
            "subject": "RPO {environment}: {service} {unknown}",
            "template": "{detail}",
        },
    }
    row.save()
    evaluate_alerts(env)
    assert mail.outbox[0].subject == f"RPO {env.name}: postgres -"
    assert mail.outbox[0].body == "postgres full in local: no proven or verified backup"


def test_fill_leaves_a_malformed_template_alone():
    assert fill("{a} and {b", {"a": 1}) == "{a} and {b"
    assert fill("{a}/{b}", {"a": 1}) == "1/-"

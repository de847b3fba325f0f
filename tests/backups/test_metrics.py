"""/metrics: who may read it, and the backup metrics it exposes, parsed with
prometheus-client's own parser."""

from datetime import timedelta

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from tests.backups.records import *  # noqa: F403

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-the-test"


@pytest.fixture
def world(make_backup_environment, make_user, make_record, settings):
    settings.PORTAL_METRICS_TOKEN = TOKEN
    env = make_backup_environment("metrics", tiers=("local", "remote"))
    other = make_backup_environment("metrics-other")
    make_record(env, age=timedelta(hours=2), bytes_total=5000, bytes_added=700)
    make_record(env, tier="remote", age=timedelta(days=3))
    make_record(env, tier="remote", status="failed", age=timedelta(days=4))
    make_record(env, tier="remote", status="failed", age=timedelta(hours=1))
    make_record(other, age=timedelta(minutes=10))
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "elsewhere": make_user("elsewhere", "viewer", other),
    }
    return env, other, users


def samples(response):
    """Return {(metric sample name, labels as a tuple): value}."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found[(sample.name, labels)] = sample.value
    return found


def key(name, env, service="postgres", strategy="full", tier="local"):
    labels = {
        "environment": env.name,
        "service": service,
        "strategy": strategy,
        "tier": tier,
    }
    return (name, tuple(sorted(labels.items())))


def environments_in(found):
    return {dict(labels).get("environment") for _name, labels in found}


def test_anonymous_gets_401_with_a_bearer_challenge(client, world):
    response = client.get(reverse("portal:metrics"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="stack-portal"'
    assert response.content.decode() == (
        "Metrics need a bearer token (Authorization: Bearer "
        "<PORTAL_METRICS_TOKEN>) or a signed-in user.\n"
    )


def test_signed_in_user_without_role_sees_no_environment(client, world):
    _env, _other, users = world
    client.force_login(users["nobody"])
    assert environments_in(samples(client.get(reverse("portal:metrics")))) == set()


def test_viewer_sees_the_environments_they_may_view(client, world):
    env, other, users = world
    client.force_login(users["viewer"])
    assert environments_in(samples(client.get(reverse("portal:metrics")))) == {env.name}


def test_viewer_of_another_environment_does_not_see_this_one(client, world):
    env, other, users = world
    client.force_login(users["elsewhere"])
    found = environments_in(samples(client.get(reverse("portal:metrics"))))
    assert env.name not in found and other.name in found


def test_metrics_token_sees_every_environment(client, world):
    env, other, _users = world
    response = client.get(
        reverse("portal:metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    found = environments_in(samples(response))
    assert {env.name, other.name, "demo"} <= found


def test_wrong_token_gets_401_even_when_signed_in(client, world):
    _env, _other, users = world
    client.force_login(users["viewer"])
    response = client.get(reverse("portal:metrics"), HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == (
        'Bearer realm="stack-portal", error="invalid_token"'
    )
    assert b"The bearer token is not the metrics token" in response.content


def test_no_token_configured_opens_nothing(client, world, settings):
    settings.PORTAL_METRICS_TOKEN = ""
    response = client.get(reverse("portal:metrics"), HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401
    assert b"No metrics token is configured (PORTAL_METRICS_TOKEN is empty)" in (
        response.content
    )


def test_backup_metrics_per_environment_service_strategy_and_tier(client, world):
    env, _other, _users = world
    response = client.get(
        reverse("portal:metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    found = samples(response)
    age = found[key("portal_backup_age_seconds", env)]
    assert 2 * 3600 <= age < 2 * 3600 + 120
    assert found[key("portal_backup_size_bytes", env)] == 5000
    assert found[key("portal_backup_added_bytes", env)] == 700
    assert found[key("portal_backup_allowed_age_seconds", env)] == 30 * 3600
    assert found[key("portal_backup_overdue", env)] == 0
    # remote: 3 days old (overdue), two failures, one of them since.
    assert found[key("portal_backup_overdue", env, tier="remote")] == 1
    assert found[key("portal_backup_failed_records", env, tier="remote")] == 2
    assert found[key("portal_backup_failures_since_success", env, tier="remote")] == 1
    assert found[key("portal_backup_failures_since_success", env)] == 0
    # A service never backed up: overdue, and no age sample at all.
    assert found[key("portal_backup_overdue", env, "redis", "rdb")] == 1
    assert key("portal_backup_age_seconds", env, "redis", "rdb") not in found
    assert found[("portal_backup_running", (("environment", env.name),))] == 0

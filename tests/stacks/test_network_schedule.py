"""Network health on a schedule: the cron line of each environment, and
the history kept for ``NETWORK_HEALTH_KEEP_DAYS``."""

import io
import shlex
from datetime import timedelta

import pytest
from croniter import croniter
from django.core.management import CommandError, call_command
from django.utils import timezone

from stacks.models import Environment, HealthProbe
from stacks.networks import prune_probes

pytestmark = pytest.mark.django_db


def crontab(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("crontab", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def health_lines(text):
    found = {}
    for line in text.splitlines():
        if "check_network_health" not in line or line.startswith("#"):
            continue
        fields = line.split(None, 6)
        argv = shlex.split(fields[6])
        at = argv.index("check_network_health")
        assert argv[at + 1] == "--env"
        found[argv[at + 2]] = (" ".join(fields[:5]), argv)
    return found


def test_every_environment_gets_its_health_probes_every_15_minutes(tmp_path):
    for name in ("alpha", "beta"):
        Environment.objects.create(name=name)
    out, _err = crontab("--log-dir", str(tmp_path))
    lines = health_lines(out)
    assert set(lines) == {"alpha", "beta"}
    for name, (schedule, argv) in lines.items():
        assert schedule == "*/15 * * * *" and croniter.is_valid(schedule)
        assert argv[-3:] == [">>", f"{tmp_path}/network-health-{name}.log", "2>&1"]
    assert "# alpha: probe the running stacks' services from inside their " in out


def test_health_schedule_follows_the_setting_and_can_be_turned_off(settings, tmp_path):
    Environment.objects.create(name="alpha")
    settings.PORTAL_STACKS = {"NETWORK_HEALTH_SCHEDULE": "5 * * * *"}
    out, _err = crontab("--log-dir", str(tmp_path))
    assert health_lines(out)["alpha"][0] == "5 * * * *"

    settings.PORTAL_STACKS = {"NETWORK_HEALTH_SCHEDULE": ""}
    out, _err = crontab("--log-dir", str(tmp_path))
    assert health_lines(out) == {}


def test_an_invalid_health_schedule_is_refused_by_name(settings, tmp_path):
    Environment.objects.create(name="alpha")
    settings.PORTAL_STACKS = {"NETWORK_HEALTH_SCHEDULE": "every quarter hour"}
    with pytest.raises(CommandError) as caught:
        crontab("--log-dir", str(tmp_path), "--install", str(tmp_path / "portal"))
    assert (
        "alpha: schedule of network-health-alpha: 'every quarter hour' has 3 fields"
        in str(caught.value)
    )
    assert not (tmp_path / "portal").exists()


def _probe(environment, age, service="postgres"):
    return HealthProbe.objects.create(
        environment=environment,
        stack="core",
        service=service,
        kind="postgres",
        target="postgres:5432",
        ok=True,
        checked=timezone.now() - age,
    )


def test_prune_keeps_the_days_asked_and_only_of_its_environment():
    alpha = Environment.objects.create(name="alpha")
    beta = Environment.objects.create(name="beta")
    old = _probe(alpha, timedelta(days=15))
    recent = _probe(alpha, timedelta(days=13))
    other = _probe(beta, timedelta(days=30))
    assert prune_probes(alpha, 14) == 1
    left = set(HealthProbe.objects.values_list("pk", flat=True))
    assert left == {recent.pk, other.pk} and old.pk not in left
    # 0 (or less) keeps everything.
    assert prune_probes(beta, 0) == 0
    assert HealthProbe.objects.filter(environment=beta).count() == 1

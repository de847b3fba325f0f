"""import_configs and export_configs on real rows: idempotence, dry run, round trip."""

import io

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.models import Operation
from stacks.config import default_stacks_file, export_configs, import_configs
from stacks.models import (
    ConfigValue,
    Environment,
    Network,
    Service,
    ServiceOverride,
    Stack,
    Volume,
)
from stacks.schema.loader import ConfigError

from .test_config_support import (
    REAL_STACKS,
    dump_rows,
    minimal,
    row_counts,
    write_config,
)

pytestmark = pytest.mark.django_db

STACK_SERVICES = {
    "core": ["postgres", "redis", "qdrant", "minio"],
    "inference": ["vllm", "litellm"],
    "ai": [
        "multimodal-worker",
        "retrieval-proxy",
        "ai-agents",
        "search-engine",
        "memory-system",
        "user-management",
    ],
    "ui": ["openwebui", "n8n", "n8n-monitoring", "nginx", "ai-agents-web"],
    "testing": ["allure-results", "allure-report", "allure-cli", "jmeter"],
    "monitoring": [
        "prometheus",
        "grafana",
        "elasticsearch",
        "kibana",
        "logstash",
        "filebeat",
    ],
}


def test_real_files_import_six_stacks_and_every_service():
    report = import_configs()
    assert report.counts()["created"] == len(report.entries)
    assert [s.name for s in Stack.objects.all()] == list(STACK_SERVICES)
    for stack, services in STACK_SERVICES.items():
        names = list(
            Service.objects.filter(stack__name=stack)
            .order_by("order")
            .values_list("name", flat=True)
        )
        assert names == services
    assert Service.objects.count() == sum(len(s) for s in STACK_SERVICES.values())


def test_real_files_import_five_environments():
    import_configs()
    assert list(Environment.objects.values_list("name", "alias")) == [
        ("development", "dev"),
        ("staging", ""),
        ("production", "prod"),
        ("testing", ""),
        ("demo", ""),
    ]
    production = Environment.lookup("prod")
    assert production.protected and production.require_secret_refs
    assert production.subnet_pool == ""
    demo = Environment.objects.get(name="demo")
    assert (demo.port_offset, demo.gpu_enabled, demo.subnet_pool) == (
        20000,
        False,
        "10.231.0.0/20",
    )


def test_real_files_every_volume_has_a_data_type():
    import_configs()
    volumes = dict(Volume.objects.values_list("name", "data_type"))
    assert len(volumes) == 14
    assert all(volumes.values())
    assert volumes["postgres_data"] == "db"
    assert volumes["qdrant_data"] == "vector"
    assert volumes["minio_data"] == "object"
    assert volumes["vllm_cache"] == "models"
    assert volumes["prometheus_data"] == "logs"
    assert volumes["grafana_data"] == "app-data"


def test_real_files_define_prometheus_and_grafana_in_monitoring():
    import_configs()
    prometheus = Service.objects.get(name="prometheus")
    grafana = Service.objects.get(name="grafana")
    assert prometheus.stack.name == grafana.stack.name == "monitoring"
    assert prometheus.image.startswith("prom/prometheus")
    assert grafana.image.startswith("grafana/grafana")
    assert prometheus.ports == ["9090:9090"]
    assert grafana.ports == ["3000:3000"]
    assert list(grafana.depends_on.values_list("name", flat=True)) == ["prometheus"]


def test_real_files_testing_stack_uses_core_database():
    import_configs()
    testing = Stack.objects.get(name="testing")
    assert list(testing.depends_on.values_list("name", flat=True)) == ["core"]
    names = set(testing.services.values_list("name", flat=True))
    assert not names & {"postgres", "redis"}
    assert Service.objects.get(name="postgres").stack.name == "core"
    assert not testing.volumes.filter(name__in=["postgres_data", "redis_data"]).exists()


def test_real_files_keep_cross_stack_dependencies():
    import_configs()
    litellm = Service.objects.get(name="litellm")
    assert set(litellm.depends_on.values_list("name", flat=True)) == {
        "vllm",
        "postgres",
    }
    agents = Service.objects.get(name="ai-agents")
    assert "vllm" in agents.depends_on.values_list("name", flat=True)


def test_real_files_networks_and_healthchecks():
    import_configs()
    assert list(Network.objects.values_list("name", "subnet", "gateway")) == [
        ("multimodal-core-net", "172.30.0.0/24", "172.30.0.1"),
        ("multimodal-inference-net", "172.31.0.0/24", "172.31.0.1"),
        ("multimodal-ai-net", "172.32.0.0/24", "172.32.0.1"),
        ("multimodal-ui-net", "172.33.0.0/24", "172.33.0.1"),
        ("multimodal-testing-net", "172.34.0.0/24", "172.34.0.1"),
        ("multimodal-monitoring-net", "172.35.0.0/24", "172.35.0.1"),
    ]
    assert Service.objects.get(name="redis").healthcheck == {
        "template": "standard",
        "interval": "30s",
        "timeout": "10s",
        "retries": 3,
        "test": ["CMD", "redis-cli", "ping"],
    }
    assert Service.objects.get(name="vllm").healthcheck["start_period"] == "180s"
    assert ConfigValue.objects.get(key="project_name").value == "multimodal"


def test_real_files_store_secret_references_not_values():
    import_configs()
    for service in Service.objects.all():
        for name, value in service.environment.items():
            if "PASSWORD" in name or name.endswith("_KEY"):
                assert value.startswith("${"), (service.name, name)


def test_second_import_reports_everything_unchanged():
    import_configs()
    before = dump_rows()
    report = import_configs()
    assert not report.changed()
    assert report.counts()["unchanged"] == len(report.entries)
    assert dump_rows() == before


def test_dry_run_on_empty_database_writes_nothing():
    report = import_configs(dry_run=True)
    assert report.counts()["created"] > 0
    assert all(count == 0 for count in row_counts().values())


def test_dry_run_changes_no_rows_and_no_values(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    redis = Service.objects.get(name="redis")
    redis.image = "redis:6"
    redis.save()
    data = minimal()
    data["stacks"]["extra"] = {
        "services": ["memcached"],
        "networks": ["extra-net"],
        "dependencies": ["core"],
    }
    data["services"]["memcached"] = {"image": "memcached:1"}
    data["stack_networks"]["extra-net"] = {
        "ipam": {"config": [{"subnet": "172.36.0.0/24"}]}
    }
    write_config(tmp_path, data)
    counts, rows = row_counts(), dump_rows()

    report = import_configs(path, dry_run=True)

    entries = {(e.kind, e.name): e for e in report.entries}
    assert entries[("service", "redis")].action == "updated"
    assert entries[("service", "redis")].changes == ["image"]
    assert entries[("stack", "extra")].action == "created"
    assert row_counts() == counts
    assert dump_rows() == rows
    assert Service.objects.get(name="redis").image == "redis:6"


def changed_config(tmp_path):
    """Import the minimal config, then write one that changes every kind."""
    path = write_config(tmp_path, minimal())
    import_configs(path)
    data = minimal()
    data["config"]["default_restart_policy"] = "always"
    data["services"]["redis"]["ports"] = ["6380:6379"]
    data["services"]["redis"]["depends_on"] = ["postgres"]
    data["stacks"]["ai"]["services"].remove("litellm")
    del data["services"]["litellm"]
    data["stacks"]["ai"]["dependencies"] = []
    data["services"]["memcached"] = {"image": "memcached:1"}
    data["services"]["worker"] = {"image": "worker:1", "depends_on": ["memcached"]}
    data["stacks"]["extra"] = {
        "services": ["memcached", "worker"],
        "networks": ["extra-net"],
        "dependencies": ["core", "ai"],
    }
    data["stack_networks"]["extra-net"] = {
        "ipam": {"config": [{"subnet": "172.36.0.0/24"}]}
    }
    # The two aliases swap places.
    data["environments"]["development"]["alias"] = "prod"
    data["environments"]["production"]["alias"] = "dev"
    data["environments"]["staging"] = {
        "subnet_pool": "10.220.0.0/20",
        "port_offset": 20000,
        "overrides": {
            "redis": {"image": "redis:7"},
            "networks": {"extra-net": {"subnet": "10.98.0.0/24"}},
        },
    }
    return write_config(tmp_path, data)


def entries_of(report):
    return [(e.kind, e.name, e.action, e.changes) for e in report.entries]


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@pytest.mark.parametrize("prune", [False, True])
def test_dry_run_writes_nothing_and_reports_what_the_import_does(tmp_path, prune):
    path = changed_config(tmp_path)
    Stack.objects.create(name="legacy", order=9)
    rows = dump_rows()

    with CaptureQueriesContext(connection) as queries:
        dry = import_configs(path, dry_run=True, prune=prune)

    assert [
        q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)
    ] == []
    assert dump_rows() == rows
    real = import_configs(path, prune=prune)
    assert entries_of(dry) == entries_of(real)
    entries = {
        (kind, name): (action, changes)
        for kind, name, action, changes in (entries_of(real))
    }
    gone = "deleted" if prune else "not in file"
    assert entries[("config", "default_restart_policy")] == ("updated", ["value"])
    # The default restart policy reaches every service without its own.
    assert entries[("service", "redis")] == (
        "updated",
        ["ports", "restart", "depends_on"],
    )
    assert entries[("stack", "ai")] == ("updated", ["depends_on"])
    assert entries[("stack", "extra")] == ("created", [])
    assert entries[("service", "worker")] == ("created", [])
    assert entries[("network override", "staging/extra-net")] == ("created", [])
    assert entries[("environment", "development")] == ("updated", ["alias"])
    assert entries[("environment", "production")] == ("updated", ["alias"])
    assert entries[("volume", "redis_data")] == ("unchanged", [])
    assert entries[("service", "litellm")] == (gone, [])
    assert entries[("stack", "legacy")] == (gone, [])
    # The real run wrote what both reported.
    assert Environment.objects.get(name="development").alias == "prod"
    assert sorted(
        Stack.objects.get(name="extra").depends_on.values_list("name", flat=True)
    ) == ["ai", "core"]
    assert list(
        Service.objects.get(name="worker").depends_on.values_list("name", flat=True)
    ) == ["memcached"]
    assert Service.objects.filter(name="litellm").exists() is not prune
    again = import_configs(path, dry_run=True, prune=prune)
    assert {e.action for e in again.entries} == (
        {"unchanged"} if prune else {"unchanged", "not in file"}
    )


def test_dry_run_prune_refuses_like_the_import_when_an_object_is_in_use(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    production = Environment.objects.get(name="production")
    operation = Operation.objects.create(kind="stack.start", environment=production)
    data = minimal()
    del data["environments"]["production"]
    write_config(tmp_path, data)
    rows = dump_rows()
    expected = (
        f"{path}: cannot delete environment production: still referenced by {operation}"
    )
    for dry_run in (True, False):
        with CaptureQueriesContext(connection) as queries:
            with pytest.raises(ConfigError) as info:
                import_configs(path, dry_run=dry_run, prune=True)
        assert str(info.value) == expected
        if dry_run:
            assert not [
                q for q in queries if q["sql"].lstrip().upper().startswith(WRITES)
            ]
        assert dump_rows() == rows


def test_objects_missing_from_the_file_are_kept_without_prune(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    legacy = Stack.objects.create(name="legacy", order=9)
    report = import_configs(path)
    assert ("stack", "legacy", "not in file") in [
        (e.kind, e.name, e.action) for e in report.entries
    ]
    assert Stack.objects.filter(pk=legacy.pk).exists()


def test_prune_deletes_objects_missing_from_the_file(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    data = minimal()
    data["stacks"]["ai"]["services"].remove("litellm")
    del data["services"]["litellm"]
    write_config(tmp_path, data)
    report = import_configs(path, prune=True)
    assert ("service", "litellm", "deleted") in [
        (e.kind, e.name, e.action) for e in report.entries
    ]
    assert not Service.objects.filter(name="litellm").exists()
    assert report.counts()["deleted"] == 1


def test_update_reports_changed_fields(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    data = minimal()
    data["services"]["redis"]["ports"] = ["6380:6379"]
    data["services"]["vllm"]["depends_on"] = ["postgres"]
    write_config(tmp_path, data)
    report = import_configs(path)
    entries = {(e.kind, e.name): e for e in report.entries}
    assert entries[("service", "redis")].changes == ["ports"]
    assert entries[("service", "vllm")].changes == ["depends_on"]
    assert report.counts()["updated"] == 2


def test_service_overrides_are_imported(tmp_path):
    data = minimal()
    data["environments"]["development"]["overrides"] = {
        "redis": {"image": "stackportal/redis:local", "environment": {"A": "1"}},
        "networks": {"core-net": {"subnet": "10.99.0.0/24"}},
    }
    import_configs(write_config(tmp_path, data))
    override = ServiceOverride.objects.get(service__name="redis")
    assert override.environment.name == "development"
    assert override.values == {
        "image": "stackportal/redis:local",
        "environment": {"A": "1"},
    }
    env = Environment.objects.get(name="development")
    assert list(env.network_overrides.values_list("network__name", "subnet")) == [
        ("core-net", "10.99.0.0/24")
    ]


def test_import_command_prints_each_object_and_a_summary(tmp_path):
    path = write_config(tmp_path, minimal())
    out = io.StringIO()
    call_command("import_configs", "--file", str(path), stdout=out)
    text = out.getvalue()
    assert "created      stack core\n" in text
    assert "created      service litellm\n" in text
    assert "created      environment production\n" in text
    assert text.rstrip().endswith(
        f"{path}: 15 created, 0 updated, 0 unchanged, 0 not in file, 0 deleted"
    )


def test_import_command_dry_run_says_so(tmp_path):
    path = write_config(tmp_path, minimal())
    out = io.StringIO()
    call_command("import_configs", "--file", str(path), "--dry-run", stdout=out)
    assert out.getvalue().rstrip().endswith("(dry run: nothing was written)")
    assert Stack.objects.count() == 0


def test_import_command_reports_not_in_file_hint(tmp_path):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    Stack.objects.create(name="legacy")
    out = io.StringIO()
    call_command("import_configs", "--file", str(path), stdout=out)
    assert "not in file  stack legacy" in out.getvalue()
    assert "1 object(s) are not in the file and were kept; --prune deletes them" in (
        out.getvalue()
    )


def test_import_command_fails_with_every_error(tmp_path):
    data = minimal()
    data["services"]["litellm"]["depends_on"] = ["vlm"]
    data["volumes"]["redis_data"]["data_type"] = "ram"
    path = write_config(tmp_path, data)
    with pytest.raises(CommandError) as info:
        call_command("import_configs", "--file", str(path), stdout=io.StringIO())
    text = str(info.value)
    assert text.startswith("2 errors; nothing was imported:\n")
    assert "services.litellm.depends_on: unknown service 'vlm'" in text
    assert "volumes.redis_data.data_type: unknown data type 'ram'" in text


def test_export_round_trip_of_the_real_files(tmp_path):
    import_configs()
    before = dump_rows()
    exported = tmp_path / "stacks.yaml"
    export_configs(exported)

    report = import_configs(exported)

    assert not report.changed()
    assert report.counts()["unchanged"] == len(report.entries)
    assert dump_rows() == before


def test_export_round_trip_into_a_fresh_database(tmp_path):
    import_configs()
    before = dump_rows()
    exported = tmp_path / "stacks.yaml"
    export_configs(exported)
    for model in (Environment, Stack, ConfigValue):
        model.objects.all().delete()
    assert Service.objects.count() == 0

    report = import_configs(exported)

    assert report.counts()["created"] == len(report.entries)
    assert dump_rows() == before


def test_export_preserves_stack_and_service_order(tmp_path):
    import_configs()
    data = yaml.safe_load(export_configs())
    assert list(data) == [
        "config",
        "services",
        "stacks",
        "stack_networks",
        "volumes",
        "environments",
    ]
    assert list(data["stacks"]) == list(STACK_SERVICES)
    for stack, services in STACK_SERVICES.items():
        assert data["stacks"][stack]["services"] == services
    assert list(data["services"]) == [
        s for names in STACK_SERVICES.values() for s in names
    ]
    assert list(data["environments"]) == [
        "development",
        "staging",
        "production",
        "testing",
        "demo",
    ]


def test_export_writes_healthchecks_in_template_form():
    import_configs()
    data = yaml.safe_load(export_configs())
    assert data["services"]["redis"]["healthcheck"] == {
        "template": "standard",
        "test": ["CMD", "redis-cli", "ping"],
    }
    assert data["volumes"]["postgres_data"] == {"driver": "local", "data_type": "db"}


def test_export_is_stable(tmp_path):
    import_configs()
    first = export_configs()
    exported = tmp_path / "stacks.yaml"
    exported.write_text(first)
    import_configs(exported)
    assert export_configs() == first


def test_export_command_writes_a_file(tmp_path):
    import_configs(write_config(tmp_path, minimal()))
    target = tmp_path / "out.yaml"
    err = io.StringIO()
    call_command("export_configs", "--output", str(target), stderr=err)
    assert f"wrote {target}" in err.getvalue()
    assert yaml.safe_load(target.read_text())["stacks"]["core"]["services"] == [
        "postgres",
        "redis",
    ]


def test_export_command_prints_to_stdout(tmp_path):
    import_configs(write_config(tmp_path, minimal()))
    out = io.StringIO()
    call_command("export_configs", stdout=out)
    assert "stack_networks:" in out.getvalue()


def test_default_file_is_in_the_config_dir():
    assert default_stacks_file() == REAL_STACKS

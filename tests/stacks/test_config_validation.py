"""Validation of stacks.yaml: each error names the file, the line and the key."""

import pytest

from stacks.config import import_configs, validate_configs
from stacks.models import Service, Stack
from stacks.schema.loader import ConfigError, display_path, load_yaml

from .test_config_support import REAL_STACKS, line_of, minimal, row_counts, write_config


def errors_of(path):
    """Return the error text of validating ``path`` (which must fail)."""
    with pytest.raises(ConfigError) as info:
        validate_configs(path)
    return str(info.value)


def test_minimal_config_is_valid(tmp_path):
    parsed, warnings, checked = validate_configs(write_config(tmp_path, minimal()))
    assert list(parsed.services) == ["postgres", "redis", "vllm", "litellm"]
    assert warnings == []
    assert checked == [str(tmp_path / "stacks.yaml")]


def test_display_path_is_relative_to_the_project():
    assert display_path(REAL_STACKS) == "configs/stacks.yaml"


def test_loader_records_key_and_item_lines(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a:\n  b: 1\n  c:\n    - x\n    - y\n")
    doc, issues = load_yaml(path)
    assert issues == []
    assert doc.lines["a"] == 1
    assert doc["a"].lines == {"b": 2, "c": 3}
    assert doc["a"]["c"].lines == [4, 5]


def test_unknown_service_in_depends_on(tmp_path):
    data = minimal()
    data["services"]["litellm"]["depends_on"] = ["vlm", "postgres"]
    path = write_config(tmp_path, data)
    line = line_of(path, "- vlm")
    text = errors_of(path)
    assert (
        f"{path}:{line}: services.litellm.depends_on: unknown service 'vlm' "
        "(did you mean 'vllm'?)"
    ) in text


def test_dependency_cycle_between_stacks(tmp_path):
    data = minimal()
    data["stacks"]["core"]["dependencies"] = ["ai"]
    path = write_config(tmp_path, data)
    line = line_of(path, "- core", after="  ai:")
    text = errors_of(path)
    assert (
        f"{path}:{line}: stacks.ai.dependencies: dependency cycle between stacks: "
        "core -> ai -> core"
    ) in text


def test_dependency_cycle_between_services(tmp_path):
    data = minimal()
    data["services"]["postgres"]["depends_on"] = ["redis"]
    data["services"]["redis"]["depends_on"] = ["postgres"]
    path = write_config(tmp_path, data)
    line = line_of(path, "- postgres", after="  redis:")
    text = errors_of(path)
    assert (
        f"{path}:{line}: services.redis.depends_on: dependency cycle between "
        "services: postgres -> redis -> postgres"
    ) in text


def test_overlapping_subnets_of_two_stacks(tmp_path):
    data = minimal()
    data["stack_networks"]["ai-net"]["ipam"]["config"] = [{"subnet": "172.30.0.0/16"}]
    path = write_config(tmp_path, data)
    line = line_of(path, "subnet: 172.30.0.0/16")
    text = errors_of(path)
    assert (
        f"{path}:{line}: stack_networks.ai-net.ipam.config[0].subnet: 172.30.0.0/16 "
        "of network ai-net (stack ai) overlaps 172.30.0.0/24 of network core-net "
        "(stack core)"
    ) in text


def test_malformed_cidr(tmp_path):
    data = minimal()
    data["stack_networks"]["core-net"]["ipam"]["config"] = [{"subnet": "172.30.0.0/33"}]
    path = write_config(tmp_path, data)
    line = line_of(path, "172.30.0.0/33")
    text = errors_of(path)
    assert (
        f"{path}:{line}: stack_networks.core-net.ipam.config[0].subnet: "
        "'172.30.0.0/33' is not a valid CIDR"
    ) in text


def test_cidr_with_host_bits_is_malformed(tmp_path):
    data = minimal()
    data["stack_networks"]["core-net"]["ipam"]["config"] = [{"subnet": "172.30.0.5/24"}]
    path = write_config(tmp_path, data)
    assert "'172.30.0.5/24' is not a valid CIDR (172.30.0.5/24 has host bits set)" in (
        errors_of(path)
    )


def test_gateway_outside_its_subnet(tmp_path):
    data = minimal()
    data["stack_networks"]["core-net"]["ipam"]["config"][0]["gateway"] = "172.31.0.1"
    path = write_config(tmp_path, data)
    line = line_of(path, "gateway: 172.31.0.1")
    text = errors_of(path)
    assert (
        f"{path}:{line}: stack_networks.core-net.ipam.config[0].gateway: 172.31.0.1 "
        "is not inside 172.30.0.0/24"
    ) in text


def test_malformed_subnet_pool(tmp_path):
    data = minimal()
    data["environments"]["development"]["subnet_pool"] = "10.210.0.0/40"
    path = write_config(tmp_path, data)
    line = line_of(path, "subnet_pool: 10.210.0.0/40")
    assert (
        f"{path}:{line}: environments.development.subnet_pool: '10.210.0.0/40' is not "
        "a valid CIDR"
    ) in errors_of(path)


def test_subnet_pool_too_small(tmp_path):
    data = minimal()
    data["environments"]["development"]["subnet_pool"] = "10.210.0.0/24"
    path = write_config(tmp_path, data)
    assert (
        "environments.development.subnet_pool: subnet pool 10.210.0.0/24 has room "
        "for 1 /24 networks, 2 are needed"
    ) in errors_of(path)


def test_unknown_data_type(tmp_path):
    data = minimal()
    data["volumes"]["postgres_data"]["data_type"] = "database"
    path = write_config(tmp_path, data)
    line = line_of(path, "data_type: database")
    assert (
        f"{path}:{line}: volumes.postgres_data.data_type: unknown data type "
        "'database' (allowed: db, cache, models, logs, test-results, config, "
        "app-data, vector, object)"
    ) in errors_of(path)


def test_missing_data_type(tmp_path):
    data = minimal()
    del data["volumes"]["redis_data"]["data_type"]
    path = write_config(tmp_path, data)
    assert "volumes.redis_data.data_type: missing data type (allowed: db," in errors_of(
        path
    )


def test_plain_password_where_production_requires_references(tmp_path):
    data = minimal()
    data["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    path = write_config(tmp_path, data)
    line = line_of(path, "POSTGRES_PASSWORD: hunter2")
    text = errors_of(path)
    assert (
        f"{path}:{line}: services.postgres.environment.POSTGRES_PASSWORD: plain value "
        "where environment production requires a ${VAR} reference"
    ) in text
    # Development has no such rule, and the value itself is never printed.
    assert "environment development requires" not in text
    assert "hunter2" not in text


def test_default_in_production_override_is_not_a_reference(tmp_path):
    data = minimal()
    data["environments"]["production"]["overrides"] = {
        "litellm": {
            "environment": {"LITELLM_MASTER_KEY": "${LITELLM_MASTER_KEY:-sk-1}"}
        }
    }
    path = write_config(tmp_path, data)
    line = line_of(path, "LITELLM_MASTER_KEY: ${LITELLM_MASTER_KEY:-sk-1}")
    assert (
        f"{path}:{line}: environments.production.overrides.litellm.environment."
        "LITELLM_MASTER_KEY: plain value where environment production requires"
    ) in errors_of(path)


def test_plain_secret_allowed_without_require_secret_refs(tmp_path):
    data = minimal()
    data["environments"]["development"]["overrides"] = {
        "postgres": {"environment": {"POSTGRES_PASSWORD": "dev-only"}}
    }
    validate_configs(write_config(tmp_path, data))


def test_list_form_environment_plain_password_is_located(tmp_path):
    data = minimal()
    data["services"]["litellm"]["environment"] = ["LITELLM_MASTER_KEY=sk-plain"]
    path = write_config(tmp_path, data)
    line = line_of(path, "LITELLM_MASTER_KEY=sk-plain")
    assert (
        f"{path}:{line}: services.litellm.environment.LITELLM_MASTER_KEY: plain value"
    ) in errors_of(path)


def test_stack_lists_unknown_service(tmp_path):
    data = minimal()
    data["stacks"]["core"]["services"].append("pgadmin")
    path = write_config(tmp_path, data)
    line = line_of(path, "- pgadmin")
    assert f"{path}:{line}: stacks.core.services: unknown service 'pgadmin'" in (
        errors_of(path)
    )


def test_service_in_two_stacks(tmp_path):
    data = minimal()
    data["stacks"]["ai"]["services"].append("postgres")
    path = write_config(tmp_path, data)
    line = line_of(path, "- postgres", after="  ai:")
    assert (
        f"{path}:{line}: stacks.ai.services: service 'postgres' is already in stack "
        "'core'"
    ) in errors_of(path)


def test_service_in_no_stack(tmp_path):
    data = minimal()
    data["stacks"]["core"]["services"].remove("redis")
    path = write_config(tmp_path, data)
    line = line_of(path, "  redis:")
    assert f"{path}:{line}: services.redis: not listed in any stack's services" in (
        errors_of(path)
    )


def test_unknown_top_level_key_suggests(tmp_path):
    data = minimal()
    data["servics"] = {}
    path = write_config(tmp_path, data)
    line = line_of(path, "servics:")
    assert (
        f"{path}:{line}: servics: unknown key 'servics' (did you mean 'services'?)"
        in (errors_of(path))
    )


def test_top_level_extension_keys_are_allowed(tmp_path):
    data = minimal()
    data["x-common"] = {"A": "1"}
    validate_configs(write_config(tmp_path, data))


def test_unknown_service_key_suggests(tmp_path):
    data = minimal()
    data["services"]["redis"]["imagee"] = "redis:7"
    path = write_config(tmp_path, data)
    line = line_of(path, "imagee:")
    assert (
        f"{path}:{line}: services.redis.imagee: unknown key 'imagee' (did you mean "
        "'image'?)"
    ) in errors_of(path)


def test_legacy_service_keys_warn(tmp_path):
    data = minimal()
    data["services"]["redis"]["container_name"] = "multimodal-redis"
    path = write_config(tmp_path, data)
    _, warnings, _ = validate_configs(path)
    line = line_of(path, "container_name:")
    assert [str(w) for w in warnings] == [
        f"{path}:{line}: services.redis.container_name: ignored: container names "
        "are <project>-<environment>-<stack>-<service>-1"
    ]


def test_volume_used_but_not_declared(tmp_path):
    data = minimal()
    data["services"]["redis"]["volumes"] = ["redis_dat:/data"]
    path = write_config(tmp_path, data)
    line = line_of(path, "- redis_dat:/data")
    assert (
        f"{path}:{line}: services.redis.volumes: volume 'redis_dat' is not declared in "
        "volumes (did you mean 'redis_data'?)"
    ) in errors_of(path)


def test_volume_of_another_stack(tmp_path):
    data = minimal()
    data["services"]["vllm"]["volumes"] = ["redis_data:/cache"]
    path = write_config(tmp_path, data)
    assert (
        "services.vllm.volumes: volume 'redis_data' belongs to stack 'core', not 'ai'"
    ) in errors_of(path)


def test_bind_mounts_need_no_volume_declaration(tmp_path):
    """A bind mount is no named volume; inside the project it needs nothing
    declared (host paths outside it need the host policy: test_host_policy)."""
    data = minimal()
    data["services"]["vllm"]["volumes"] = ["./models:/models:ro"]
    validate_configs(write_config(tmp_path, data))


@pytest.mark.parametrize(
    "port, problem",
    [
        ("80:80:80:80", "is not a valid port"),
        ("http", "is not a valid port"),
        ("70000:80", "port 70000 is outside 1-65535"),
        ("8000-8001:80", "host and container ranges differ in length"),
        ("1.2.3.999:80:80", "1.2.3.999 is not an IP address"),
    ],
)
def test_invalid_port(tmp_path, port, problem):
    data = minimal()
    data["services"]["redis"]["ports"] = [port]
    path = write_config(tmp_path, data)
    line = line_of(path, f"- {port}")
    text = errors_of(path)
    assert f"{path}:{line}: services.redis.ports: " in text
    assert problem in text


@pytest.mark.parametrize(
    "port",
    [
        "6379",
        "127.0.0.1:6379:6379",
        "514:514/udp",
        "${P:-6379}:6379",
        "9000-9001:9000-9001",
    ],
)
def test_valid_ports(tmp_path, port):
    data = minimal()
    data["services"]["redis"]["ports"] = [port]
    validate_configs(write_config(tmp_path, data))


def test_port_clash_inside_an_environment(tmp_path):
    data = minimal()
    data["services"]["vllm"]["ports"] = ["6379:8000"]
    path = write_config(tmp_path, data)
    assert (
        "services.vllm.ports: in environment development: 127.0.0.1:16379/tcp is also "
        "published by service redis"
    ) in errors_of(path)


def test_port_offset_beyond_65535(tmp_path):
    data = minimal()
    data["environments"]["development"]["port_offset"] = 60000
    path = write_config(tmp_path, data)
    text = errors_of(path)
    assert (
        "services.vllm.ports: in environment development: port '8000:8000' plus "
        "offset 60000 is 68000, above 65535"
    ) in text
    assert "5432" not in text


def test_environments_sharing_a_host_need_distinct_pools(tmp_path):
    data = minimal()
    data["environments"]["testing"] = {
        "subnet_pool": "10.210.8.0/21",
        "port_offset": 40000,
    }
    path = write_config(tmp_path, data)
    line = line_of(path, "subnet_pool: 10.210.8.0/21")
    assert (
        f"{path}:{line}: environments.testing.subnet_pool: environments testing and "
        "development share Docker host unix:///var/run/docker.sock but subnet pool "
        "10.210.8.0/21 overlaps 10.210.0.0/20 (give each environment its own "
        "subnet_pool)"
    ) in errors_of(path)


def test_pool_overlapping_another_environments_default_subnets(tmp_path):
    data = minimal()
    data["environments"]["development"]["subnet_pool"] = "172.30.0.0/20"
    path = write_config(tmp_path, data)
    assert (
        "environments.development.subnet_pool: environments development and "
        "production share Docker host unix:///var/run/docker.sock but 172.30.0.0/24 "
        "of network core-net in development overlaps 172.30.0.0/24 of network "
        "core-net in production"
    ) in errors_of(path)


def test_environments_on_different_hosts_may_reuse_a_pool(tmp_path):
    data = minimal()
    data["environments"]["testing"] = {
        "docker_host": "ssh://ci@testbox",
        "subnet_pool": "10.210.0.0/20",
        "port_offset": 10000,
    }
    validate_configs(write_config(tmp_path, data))


def test_environments_sharing_a_host_need_distinct_ports(tmp_path):
    data = minimal()
    data["environments"]["testing"] = {
        "subnet_pool": "10.230.0.0/20",
        "port_offset": 10000,
    }
    path = write_config(tmp_path, data)
    line = line_of(path, "port_offset: 10000", after="  testing:")
    assert (
        f"{path}:{line}: environments.testing.port_offset: environments testing and "
        "development share Docker host unix:///var/run/docker.sock but both publish "
        "port 15432/tcp (service postgres and service postgres) (choose port offsets "
        "further apart)"
    ) in errors_of(path)


def test_network_override_overlapping_pool_allocation(tmp_path):
    data = minimal()
    data["environments"]["development"]["overrides"] = {
        "networks": {"ai-net": {"subnet": "10.210.0.0/24"}}
    }
    path = write_config(tmp_path, data)
    assert (
        "environments.development.overrides.networks.ai-net.subnet: in environment "
        "development, 10.210.0.0/24 of network ai-net overlaps 10.210.0.0/24 of "
        "network core-net"
    ) in errors_of(path)


def test_cross_stack_dependency_needs_stack_dependency(tmp_path):
    data = minimal()
    data["services"]["postgres"]["depends_on"] = ["vllm"]
    path = write_config(tmp_path, data)
    line = line_of(path, "- vllm", after="  postgres:")
    assert (
        f"{path}:{line}: services.postgres.depends_on: 'vllm' is in stack 'ai', which "
        "stack 'core' does not depend on"
    ) in errors_of(path)


def test_unknown_stack_dependency(tmp_path):
    data = minimal()
    data["stacks"]["ai"]["dependencies"] = ["cor"]
    path = write_config(tmp_path, data)
    assert "stacks.ai.dependencies: unknown stack 'cor' (did you mean 'core'?)" in (
        errors_of(path)
    )


def test_network_in_no_stack(tmp_path):
    data = minimal()
    data["stack_networks"]["multimodal-external"] = {
        "driver": "bridge",
        "ipam": {"config": [{"subnet": "172.29.0.0/24"}]},
    }
    path = write_config(tmp_path, data)
    assert (
        "stack_networks.multimodal-external: not listed in any stack's networks"
    ) in errors_of(path)


def test_unknown_healthcheck_template(tmp_path):
    data = minimal()
    data["services"]["postgres"]["healthcheck"]["template"] = "standart"
    path = write_config(tmp_path, data)
    assert (
        "services.postgres.healthcheck.template: unknown healthcheck template "
        "'standart' (did you mean 'standard'?)"
    ) in errors_of(path)


def test_invalid_variable_reference(tmp_path):
    data = minimal()
    data["services"]["redis"]["command"] = "redis-server --requirepass $5"
    path = write_config(tmp_path, data)
    assert (
        "services.redis.command: invalid variable reference in "
        "'redis-server --requirepass $5' (write $$ for a literal $)"
    ) in errors_of(path)


def test_unknown_override_key_points_to_extra(tmp_path):
    data = minimal()
    data["environments"]["development"]["overrides"] = {"redis": {"deploy": {}}}
    path = write_config(tmp_path, data)
    assert (
        "environments.development.overrides.redis.deploy: unknown key 'deploy' "
        "(Compose keys go under 'extra')"
    ) in errors_of(path)


def test_override_of_unknown_service(tmp_path):
    data = minimal()
    data["environments"]["development"]["overrides"] = {"redsi": {"image": "x"}}
    path = write_config(tmp_path, data)
    assert (
        "environments.development.overrides.redsi: unknown service 'redsi' (did you "
        "mean 'redis'?)"
    ) in errors_of(path)


def test_alias_taken(tmp_path):
    data = minimal()
    data["environments"]["production"]["alias"] = "dev"
    path = write_config(tmp_path, data)
    assert (
        "environments.production.alias: 'dev' is already taken by alias of development"
    ) in errors_of(path)


def test_duplicate_key(tmp_path):
    path = tmp_path / "stacks.yaml"
    text = write_config(tmp_path, minimal()).read_text()
    path.write_text(text.replace("  redis:\n", "  redis:\n    image: a\n", 1))
    assert f"{path}:" in errors_of(path)
    assert "image: duplicate key (first at line" in errors_of(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "stacks.yaml"
    path.write_text("services:\n  a: [1, 2\nstacks: {}\n")
    text = errors_of(path)
    assert text.startswith(f"{path}:3: invalid YAML")


def test_all_errors_are_reported_together_and_nothing_is_written(tmp_path, db):
    data = minimal()
    data["services"]["litellm"]["depends_on"] = ["vlm"]
    data["volumes"]["postgres_data"]["data_type"] = "database"
    data["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        import_configs(path)
    assert len(info.value.issues) == 3
    assert all(c == 0 for c in row_counts().values())


def test_errors_leave_an_existing_import_untouched(tmp_path, db):
    path = write_config(tmp_path, minimal())
    import_configs(path)
    before = row_counts()
    data = minimal()
    data["services"]["redis"]["image"] = "redis:8"
    data["stacks"]["extra"] = {"services": ["nope"]}
    write_config(tmp_path, data)
    with pytest.raises(ConfigError):
        import_configs(path)
    assert row_counts() == before
    assert Service.objects.get(name="redis").image == "redis:7-alpine"
    assert not Stack.objects.filter(name="extra").exists()


def test_real_file_has_no_errors_or_warnings():
    parsed, warnings, checked = validate_configs(REAL_STACKS)
    assert warnings == []
    assert checked == [
        "configs/stacks.yaml",
        "configs/backup-strategies.yaml",
        "configs/retention-policies.yaml",
    ]


def test_project_name_differing_from_settings_warns(tmp_path, settings):
    settings.PORTAL_PROJECT = "other"
    path = write_config(tmp_path, minimal())
    _, warnings, _ = validate_configs(path)
    line = line_of(path, "project_name: multimodal")
    assert [str(w) for w in warnings] == [
        f"{path}:{line}: config.project_name: 'multimodal' differs from "
        "PORTAL_PROJECT 'other', which names the Compose projects"
    ]


def test_secret_variables_in_settings_of_a_strict_environment(tmp_path):
    data = minimal()
    data["environments"]["production"]["settings"] = {
        "variables": {"POSTGRES_PASSWORD": "x", "POSTGRES_DB": "app"}
    }
    path = write_config(tmp_path, data)
    line = line_of(path, "POSTGRES_PASSWORD: x")
    assert (
        f"{path}:{line}: environments.production.settings.variables.POSTGRES_PASSWORD: "
        "secret variables cannot be set in the file where environment production "
        "requires ${VAR} references"
    ) in errors_of(path)


# A value of each service key, for the override key tests below.
KEY_VALUES = {
    "description": "d",
    "category": "c",
    "image": "x:1",
    "build": "./b",
    "command": "true",
    "entrypoint": "sh",
    "environment": {"A": "1"},
    "ports": ["6390:6379"],
    "volumes": [],
    "healthcheck": {"test": ["CMD", "true"]},
    "gpu": False,
    "gpu_count": 1,
    "depends_on": [],
    "restart": "no",
    "user": "1000",
    "shm_size": "1g",
    "extra": {},
}


def test_override_keys_follow_the_service_keys():
    """One list: the override keys are the service keys an environment may
    change, in the order of the service keys, and the model allows exactly
    those; an import writes every service key but depends_on (a relation)."""
    from stacks.models import ServiceOverride
    from stacks.schema.keys import OVERRIDE_KEYS, SERVICE_FIELDS, SERVICE_KEYS

    assert set(KEY_VALUES) == set(SERVICE_KEYS)
    assert OVERRIDE_KEYS == tuple(
        k for k in SERVICE_KEYS if k in ServiceOverride.ALLOWED_KEYS
    )
    assert ServiceOverride.ALLOWED_KEYS == frozenset(OVERRIDE_KEYS)
    assert SERVICE_FIELDS == (*(k for k in SERVICE_KEYS if k != "depends_on"), "order")
    assert {f.name for f in Service._meta.get_fields()} >= set(SERVICE_FIELDS)


@pytest.mark.parametrize("key", list(KEY_VALUES))
def test_override_key_accepted_by_import_and_model_alike(tmp_path, key):
    from django.core.exceptions import ValidationError

    from stacks.models import ServiceOverride
    from stacks.schema.keys import OVERRIDE_KEYS

    data = minimal()
    data["environments"]["development"]["overrides"] = {"redis": {key: KEY_VALUES[key]}}
    try:
        validate_configs(write_config(tmp_path, data))
        text = ""
    except ConfigError as exc:
        text = str(exc)
    imported = f"unknown key {key!r}" not in text
    try:
        ServiceOverride(values={key: KEY_VALUES[key]}).clean()
        stored = True
    except ValidationError:
        stored = False
    assert imported == stored == (key in OVERRIDE_KEYS)


@pytest.mark.parametrize("name", ["networks", "config"])
def test_reserved_service_names_are_refused_where_they_stand(tmp_path, name):
    """``networks`` sits beside service names in an environment's overrides,
    and the configuration backups are recorded as service ``config``."""
    data = minimal()
    data["services"][name] = data["services"]["redis"]
    path = write_config(tmp_path, data)
    line = line_of(path, f"  {name}:", after="services:")
    text = errors_of(path)
    assert f"{path}:{line}: services.{name}: {name!r} is reserved (" in text
    assert "name the service otherwise" in text


def test_the_configuration_backups_service_name_is_reserved():
    from backups.strategies.config import CONFIG_SERVICE
    from stacks.schema.keys import RESERVED_SERVICE_NAMES

    assert CONFIG_SERVICE in RESERVED_SERVICE_NAMES

"""Export of the configuration models as ``stacks.yaml``.

:func:`export_configs` writes the same shape :func:`import_configs` reads, so
importing the export gives back the same rows: stacks, services (in stack
and service order), networks, volumes with their data types, environments
and their overrides. Healthchecks are written in their template form.
"""

from pathlib import Path

import yaml

from ..models import ConfigValue, Environment, Network, Service, Stack, Volume
from ..schema.keys import DEFAULT_CONFIG, PASSTHROUGH_KEYS, SERVICE_FIELDS
from ..schema.values import compact_healthcheck

__all__ = ["dump_yaml", "export_configs", "export_data"]

HEADER = (
    "# Stack Portal configuration, exported from the database by\n"
    "# `manage.py export_configs`. `manage.py import_configs --file` reads it back.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literals, no anchors."""

    def ignore_aliases(self, data):
        return True


def _represent_str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data):
    """Return ``data`` as YAML text in the style of the configuration files."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def _service_values(values, templates, *, default_restart, override=False):
    """Return the YAML mapping of a service (or override) from model values."""
    out = {}
    for key in ("category", "description", "image"):
        if values.get(key):
            out[key] = values[key]
    extra = dict(values.get("extra") or {})
    build = extra.pop("build", None) if not override else None
    if build is not None:
        out["build"] = build
    elif values.get("build"):
        out["build"] = values["build"]
    for key in ("command", "entrypoint"):
        if key in values and (override or values[key] is not None):
            out[key] = values[key]
    for key in ("environment", "ports", "volumes"):
        if key in values and (override or values[key]):
            out[key] = values[key]
    if "healthcheck" in values and (override or values["healthcheck"]):
        out["healthcheck"] = compact_healthcheck(values["healthcheck"], templates)
    if "gpu" in values and (override or values["gpu"]):
        out["gpu"] = values["gpu"]
    if "gpu_count" in values and (override or values["gpu_count"] != "all"):
        out["gpu_count"] = values["gpu_count"]
    if values.get("depends_on"):
        out["depends_on"] = values["depends_on"]
    if "restart" in values and (override or values["restart"] != default_restart):
        out["restart"] = values["restart"]
    for key in ("user", "shm_size"):
        if key in values and (override or values[key]):
            out[key] = values[key]
    if override:
        if "extra" in values:
            out["extra"] = extra
        return out
    rest = {}
    for key, value in extra.items():
        if key in PASSTHROUGH_KEYS or key.startswith("x-"):
            out[key] = value
        else:
            rest[key] = value
    if rest:
        out["extra"] = rest
    return out


def export_data():
    """Return the configuration in the database as a ``stacks.yaml`` dict."""
    config = dict(DEFAULT_CONFIG)
    config.update({c.key: c.value for c in ConfigValue.objects.all()})
    templates = config.get("healthcheck_templates") or {}
    default_restart = config.get("default_restart_policy")

    stacks = list(
        Stack.objects.prefetch_related("depends_on").order_by("order", "name")
    )
    stack_rank = {s.pk: i for i, s in enumerate(stacks)}
    services = sorted(
        Service.objects.select_related("stack").prefetch_related("depends_on__stack"),
        key=lambda s: (stack_rank[s.stack_id], s.order, s.name),
    )
    service_rank = {s.pk: i for i, s in enumerate(services)}
    networks = sorted(
        Network.objects.all(), key=lambda n: (stack_rank[n.stack_id], n.name)
    )
    volumes = sorted(
        Volume.objects.all(), key=lambda v: (stack_rank[v.stack_id], v.name)
    )

    data = {"config": config, "services": {}}
    for service in services:
        values = {f: getattr(service, f) for f in SERVICE_FIELDS if f != "order"}
        values["depends_on"] = [
            d.name
            for d in sorted(service.depends_on.all(), key=lambda d: service_rank[d.pk])
        ]
        data["services"][service.name] = _service_values(
            values, templates, default_restart=default_restart
        )

    data["stacks"] = {}
    for stack in stacks:
        data["stacks"][stack.name] = {
            "description": stack.description,
            "services": [s.name for s in services if s.stack_id == stack.pk],
            "dependencies": [
                d.name
                for d in sorted(stack.depends_on.all(), key=lambda d: stack_rank[d.pk])
            ],
            "networks": [n.name for n in networks if n.stack_id == stack.pk],
            "volumes": [v.name for v in volumes if v.stack_id == stack.pk],
            "environment_variables": list(stack.environment_variables or []),
        }

    data["stack_networks"] = {}
    for network in networks:
        entry = {"subnet": network.subnet}
        if network.gateway:
            entry["gateway"] = network.gateway
        values = {
            "driver": network.driver,
            "ipam": {"driver": "default", "config": [entry]},
        }
        if network.internal:
            values["internal"] = True
        data["stack_networks"][network.name] = values

    data["volumes"] = {}
    for volume in volumes:
        values = {"driver": volume.driver, "data_type": volume.data_type}
        if volume.description:
            values["description"] = volume.description
        data["volumes"][volume.name] = values

    data["environments"] = {}
    for env in Environment.objects.order_by("order", "name"):
        values = {
            "alias": env.alias,
            "description": env.description,
            "docker_host": env.docker_host,
            "protected": env.protected,
            "subnet_pool": env.subnet_pool,
            "port_offset": env.port_offset,
            "bind_address": env.bind_address,
            "gpu_enabled": env.gpu_enabled,
            "require_secret_refs": env.require_secret_refs,
        }
        if env.host_policy:
            values["host_policy"] = env.host_policy
        values["settings"] = env.settings or {}
        overrides = {}
        for override in sorted(
            env.service_overrides.select_related("service"),
            key=lambda o: service_rank[o.service_id],
        ):
            overrides[override.service.name] = _service_values(
                override.values,
                templates,
                default_restart=default_restart,
                override=True,
            )
        network_overrides = {}
        for override in sorted(
            env.network_overrides.select_related("network"),
            key=lambda o: (stack_rank[o.network.stack_id], o.network.name),
        ):
            entry = {"subnet": override.subnet}
            if override.gateway:
                entry["gateway"] = override.gateway
            network_overrides[override.network.name] = entry
        if network_overrides:
            overrides["networks"] = network_overrides
        if overrides:
            values["overrides"] = overrides
        data["environments"][env.name] = values
    return data


def export_configs(path=None):
    """Return the configuration as YAML text; write it to ``path`` if given."""
    text = HEADER + dump_yaml(export_data())
    if path:
        Path(path).write_text(text)
    return text

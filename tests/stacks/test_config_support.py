"""Helpers shared by the configuration tests: small YAML files and row dumps.

The tests build a minimal valid ``stacks.yaml`` as a dict, inject one fault,
write it to ``tmp_path`` and look up the line the fault landed on, so the
expected messages name the real file and line.
"""

import copy
from pathlib import Path

import yaml
from django.conf import settings

CONFIG_DIR = Path(settings.BASE_DIR) / "configs"
REAL_STACKS = CONFIG_DIR / "stacks.yaml"

MINIMAL = {
    "config": {
        "project_name": "multimodal",
        "default_restart_policy": "unless-stopped",
        "healthcheck_templates": {
            "standard": {"interval": "30s", "timeout": "10s", "retries": 3},
        },
    },
    "services": {
        "postgres": {
            "image": "postgres:16-alpine",
            "ports": ["${POSTGRES_PORT:-5432}:5432"],
            "environment": {
                "POSTGRES_DB": "multimodal",
                "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}",
            },
            "volumes": ["postgres_data:/var/lib/postgresql/data"],
            "healthcheck": {
                "template": "standard",
                "test": ["CMD-SHELL", "pg_isready"],
            },
        },
        "redis": {
            "image": "redis:7-alpine",
            "command": "redis-server --appendonly yes",
            "ports": ["6379:6379"],
            "volumes": ["redis_data:/data"],
        },
        "vllm": {
            "image": "vllm/vllm-openai:latest",
            "ports": ["8000:8000"],
            "gpu": True,
            "environment": {"CUDA_VISIBLE_DEVICES": "0"},
        },
        "litellm": {
            "image": "ghcr.io/berriai/litellm:main-latest",
            "ports": ["4000:4000"],
            "environment": {"LITELLM_MASTER_KEY": "${LITELLM_MASTER_KEY}"},
            "depends_on": ["vllm", "postgres"],
        },
    },
    "stacks": {
        "core": {
            "description": "Core",
            "services": ["postgres", "redis"],
            "dependencies": [],
            "networks": ["core-net"],
            "volumes": ["postgres_data", "redis_data"],
            "environment_variables": ["POSTGRES_PASSWORD"],
        },
        "ai": {
            "description": "Inference",
            "services": ["vllm", "litellm"],
            "dependencies": ["core"],
            "networks": ["ai-net"],
            "volumes": [],
        },
    },
    "stack_networks": {
        "core-net": {
            "driver": "bridge",
            "ipam": {
                "driver": "default",
                "config": [{"subnet": "172.30.0.0/24", "gateway": "172.30.0.1"}],
            },
        },
        "ai-net": {
            "driver": "bridge",
            "ipam": {
                "driver": "default",
                "config": [{"subnet": "172.31.0.0/24", "gateway": "172.31.0.1"}],
            },
        },
    },
    "volumes": {
        "postgres_data": {"driver": "local", "data_type": "db"},
        "redis_data": {"driver": "local", "data_type": "cache"},
    },
    "environments": {
        "development": {
            "alias": "dev",
            "subnet_pool": "10.210.0.0/20",
            "port_offset": 10000,
        },
        "production": {
            "alias": "prod",
            "protected": True,
            "require_secret_refs": True,
        },
    },
}


def minimal():
    """Return a fresh copy of the minimal valid configuration."""
    return copy.deepcopy(MINIMAL)


def write_config(directory, data, name="stacks.yaml"):
    """Write ``data`` as YAML into ``directory``; return the path."""
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def line_of(path, text, after=None):
    """Return the 1-based line holding ``text`` (after the line holding ``after``)."""
    lines = Path(path).read_text().splitlines()
    start = 0
    if after is not None:
        start = next(i for i, line in enumerate(lines) if after in line) + 1
    for i in range(start, len(lines)):
        if text in lines[i]:
            return i + 1
    raise AssertionError(f"{text!r} not in {path}")


def dump_rows():
    """Return every configuration row in a canonical, primary-key-free form."""
    from stacks.models import (
        ConfigValue,
        Environment,
        Network,
        NetworkOverride,
        Service,
        ServiceOverride,
        Stack,
        Volume,
    )

    def fields(obj, names):
        return {n: getattr(obj, n) for n in names}

    return {
        "config": {c.key: c.value for c in ConfigValue.objects.all()},
        "stacks": [
            {
                **fields(s, ["name", "description", "environment_variables", "order"]),
                "depends_on": sorted(d.name for d in s.depends_on.all()),
            }
            for s in Stack.objects.order_by("name")
        ],
        "networks": [
            {
                **fields(n, ["name", "driver", "subnet", "gateway", "internal"]),
                "stack": n.stack.name,
            }
            for n in Network.objects.order_by("name")
        ],
        "volumes": [
            {
                **fields(v, ["name", "driver", "data_type", "description"]),
                "stack": v.stack.name,
            }
            for v in Volume.objects.order_by("name")
        ],
        "services": [
            {
                **fields(
                    s,
                    [
                        "name",
                        "description",
                        "category",
                        "image",
                        "build",
                        "command",
                        "entrypoint",
                        "environment",
                        "ports",
                        "volumes",
                        "healthcheck",
                        "gpu",
                        "gpu_count",
                        "restart",
                        "user",
                        "shm_size",
                        "extra",
                        "order",
                    ],
                ),
                "stack": s.stack.name,
                "depends_on": sorted(d.name for d in s.depends_on.all()),
            }
            for s in Service.objects.order_by("name")
        ],
        "environments": [
            fields(
                e,
                [
                    "name",
                    "alias",
                    "description",
                    "docker_host",
                    "protected",
                    "subnet_pool",
                    "port_offset",
                    "bind_address",
                    "gpu_enabled",
                    "require_secret_refs",
                    "settings",
                    "order",
                ],
            )
            for e in Environment.objects.order_by("name")
        ],
        "service_overrides": sorted(
            (o.environment.name, o.service.name, repr(o.values))
            for o in ServiceOverride.objects.all()
        ),
        "network_overrides": sorted(
            (o.environment.name, o.network.name, o.subnet, o.gateway)
            for o in NetworkOverride.objects.all()
        ),
    }


def row_counts():
    """Return the number of rows of each configuration model."""
    from stacks.models import (
        ConfigValue,
        Environment,
        Network,
        NetworkOverride,
        Service,
        ServiceOverride,
        Stack,
        Volume,
    )

    models = [
        ConfigValue,
        Environment,
        Network,
        NetworkOverride,
        Service,
        ServiceOverride,
        Stack,
        Volume,
    ]
    return {m.__name__: m.objects.count() for m in models}

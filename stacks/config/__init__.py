"""Configuration files: load, validate, import, export, and apply per environment.

``configs/stacks.yaml`` is imported into the models by
:func:`import_configs` (``manage.py import_configs``) and written back by
:func:`export_configs` (``manage.py export_configs``). The runtime helpers
:func:`effective_service`, :func:`resolve_service`, :func:`network_plan` and
:func:`published_ports` say what a service, network or port is in one
environment. docs/CONFIGURATION.md describes the files.
"""

from .effective import (
    HEALTHCHECK_KEYS,
    PlannedNetwork,
    PortMapping,
    PublishedPort,
    allocate_subnets,
    compact_healthcheck,
    effective_service,
    expand_healthcheck,
    merge_service,
    network_plan,
    parse_port,
    publish,
    published_ports,
    resolve_service,
    service_values,
)
from .export import dump_yaml, export_configs, export_data
from .loader import ConfigError, Issue, LineDict, LineList, load_yaml
from .schema import PASSTHROUGH_KEYS, StacksConfig, parse_stacks
from .sync import (
    ImportReport,
    ReportEntry,
    default_stacks_file,
    import_configs,
    validate_configs,
)

__all__ = [
    "HEALTHCHECK_KEYS",
    "PASSTHROUGH_KEYS",
    "ConfigError",
    "ImportReport",
    "Issue",
    "LineDict",
    "LineList",
    "PlannedNetwork",
    "PortMapping",
    "PublishedPort",
    "ReportEntry",
    "StacksConfig",
    "allocate_subnets",
    "compact_healthcheck",
    "default_stacks_file",
    "dump_yaml",
    "effective_service",
    "expand_healthcheck",
    "export_configs",
    "export_data",
    "import_configs",
    "load_yaml",
    "merge_service",
    "network_plan",
    "parse_port",
    "parse_stacks",
    "publish",
    "published_ports",
    "resolve_service",
    "service_values",
    "validate_configs",
]

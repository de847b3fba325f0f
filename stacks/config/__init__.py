"""The configuration in the database: effective values, import, export.

``configs/stacks.yaml`` is checked by :mod:`stacks.schema` and written into
the models by :func:`~.sync.import_configs` (``manage.py import_configs``);
:func:`~.export.export_configs` (``manage.py export_configs``) writes the
rows back in the same shape. :mod:`.effective` says what a service, network
or port is in one environment. docs/CONFIGURATION.md describes the files.
"""

from .effective import (
    effective_service,
    network_plan,
    published_ports,
    resolve_service,
    service_values,
)
from .export import dump_yaml, export_configs, export_data
from .sync import (
    ImportReport,
    ReportEntry,
    default_stacks_file,
    import_configs,
    validate_configs,
)

__all__ = [
    "ImportReport",
    "ReportEntry",
    "default_stacks_file",
    "dump_yaml",
    "effective_service",
    "export_configs",
    "export_data",
    "import_configs",
    "network_plan",
    "published_ports",
    "resolve_service",
    "service_values",
    "validate_configs",
]

"""Every key the configuration files may hold, and their defaults.

A leaf module: the models, the parser, the importer and the exporter take
their field lists from here, so a key is named in one place.
"""

from .values import HEALTHCHECK_KEYS

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_CONFIG",
    "ENVIRONMENT_DEFAULTS",
    "ENVIRONMENT_FIELDS",
    "ENVIRONMENT_KEYS",
    "HOST_POLICY_KEYS",
    "IPAM_CONFIG_KEYS",
    "IPAM_KEYS",
    "LEGACY_CONFIG_KEYS",
    "LEGACY_ENVIRONMENT_KEYS",
    "LEGACY_SERVICE_KEYS",
    "NETWORK_KEYS",
    "OVERRIDE_KEYS",
    "PASSTHROUGH_KEYS",
    "REQUIRED_TOP_KEYS",
    "RESERVED_SERVICE_NAMES",
    "SERVICE_FIELDS",
    "SERVICE_KEYS",
    "SERVICE_ONLY_KEYS",
    "STACK_KEYS",
    "TEMPLATE_KEYS",
    "TOP_KEYS",
    "VOLUME_KEYS",
]

#: Names no service may take, and who uses each: ``networks`` is a key of
#: an environment's overrides beside the service names; ``config`` is the
#: service the configuration backups are recorded under
#: (``backups.strategies.config.CONFIG_SERVICE``).
RESERVED_SERVICE_NAMES = {
    "networks": "environment overrides use it",
    "config": "the configuration backups are recorded under it",
}
TOP_KEYS = ("config", "services", "stacks", "stack_networks", "volumes", "environments")
REQUIRED_TOP_KEYS = ("services", "stacks", "stack_networks", "volumes", "environments")
CONFIG_KEYS = ("project_name", "default_restart_policy", "healthcheck_templates")
# Keys of the seed's config section: accepted and ignored, with a warning.
LEGACY_CONFIG_KEYS = {
    "network_name": "stacks use stack_networks; the single network is gone",
    "network": "stacks use stack_networks; the single network is gone",
    "volume_config": "set the driver on each volume",
}

SERVICE_KEYS = (
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
    "depends_on",
    "restart",
    "user",
    "shm_size",
    "extra",
)
#: Compose service keys kept in ``Service.extra`` when written at the top
#: level of a service (the ones the Docker adapter applies).
PASSTHROUGH_KEYS = (
    "cap_add",
    "cap_drop",
    "cpus",
    "deploy",
    "devices",
    "dns",
    "domainname",
    "extra_hosts",
    "group_add",
    "hostname",
    "init",
    "ipc",
    "labels",
    "logging",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "pid",
    "pids_limit",
    "privileged",
    "read_only",
    "security_opt",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "working_dir",
)
LEGACY_SERVICE_KEYS = {
    "container_name": "container names are <project>-<environment>-<stack>-<service>-1",
    "volumes_required": "volumes come from the service's volumes",
    "profiles": "stacks replace profiles",
    "runtime": "GPU access comes from gpu: true",
    "networks": "services join their stack's networks",
}
#: Service keys an environment override cannot change.
SERVICE_ONLY_KEYS = ("description", "category", "build", "depends_on")
#: Keys of an environment's service override (``ServiceOverride.values``),
#: in the order of SERVICE_KEYS.
OVERRIDE_KEYS = tuple(k for k in SERVICE_KEYS if k not in SERVICE_ONLY_KEYS)
STACK_KEYS = (
    "description",
    "services",
    "dependencies",
    "networks",
    "volumes",
    "environment_variables",
)
NETWORK_KEYS = ("driver", "ipam", "internal")
IPAM_KEYS = ("driver", "config")
IPAM_CONFIG_KEYS = ("subnet", "gateway")
VOLUME_KEYS = ("driver", "data_type", "description")
ENVIRONMENT_KEYS = (
    "alias",
    "description",
    "docker_host",
    "protected",
    "subnet_pool",
    "port_offset",
    "bind_address",
    "gpu_enabled",
    "require_secret_refs",
    "host_policy",
    "settings",
    "overrides",
)
LEGACY_ENVIRONMENT_KEYS = {"services": "every stack can run in every environment"}
TEMPLATE_KEYS = tuple(k for k in HEALTHCHECK_KEYS if k != "template")

DEFAULT_CONFIG = {
    "project_name": "multimodal",
    "default_restart_policy": "unless-stopped",
    "healthcheck_templates": {},
}
ENVIRONMENT_DEFAULTS = {
    "alias": "",
    "description": "",
    "docker_host": "unix:///var/run/docker.sock",
    "protected": False,
    "subnet_pool": "",
    "port_offset": 0,
    "bind_address": "127.0.0.1",
    "gpu_enabled": True,
    "require_secret_refs": False,
    "host_policy": {},
    "settings": {},
}
#: Keys of an environment's ``host_policy``: what its services may ask of
#: the Docker host beyond the defaults (see stacks.schema.hostsafety).
HOST_POLICY_KEYS = ("allow", "capabilities", "devices", "bind_mounts")

# The Service fields an import writes: every service key of the file (less
# depends_on, a many-to-many set after the rows exist) and the order.
SERVICE_FIELDS = (*(k for k in SERVICE_KEYS if k != "depends_on"), "order")
# Likewise for Environment: its keys less the overrides (rows of their own).
ENVIRONMENT_FIELDS = (*(k for k in ENVIRONMENT_KEYS if k != "overrides"), "order")

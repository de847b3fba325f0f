"""Validation of ``configs/stacks.yaml`` into plain, model-shaped data.

:func:`parse_stacks` checks a loaded document and returns a
:class:`StacksConfig` of dicts ready to be written to the models, plus every
:class:`~stacks.config.loader.Issue` found (errors) and warnings (ignored
legacy keys). Each issue names the file, the line and the key path.
"""

import difflib
import ipaddress
import re
from dataclasses import dataclass, field

from ..choices import DataType
from ..secrets import invalid_references, is_reference, is_secret_name
from .effective import (
    HEALTHCHECK_KEYS,
    allocate_subnets,
    expand_healthcheck,
    merge_service,
    parse_port,
    publish,
)
from .loader import Issue, LineDict, line_of

__all__ = [
    "DEFAULT_CONFIG",
    "OVERRIDE_KEYS",
    "PASSTHROUGH_KEYS",
    "SERVICE_KEYS",
    "StacksConfig",
    "parse_stacks",
]

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
    "settings": {},
}

_SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
_SHM_RE = re.compile(r"^\d+(\.\d+)?\s*[bkmgBKMG]?[bB]?$")
_DOCKER_HOST_RE = re.compile(r"^(unix|tcp|ssh|http|https|npipe)://\S+$")
_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated", "consistent"}


@dataclass
class StacksConfig:
    """``stacks.yaml`` validated, in model terms, in file order."""

    config: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    stacks: dict = field(default_factory=dict)
    networks: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    environments: dict = field(default_factory=dict)

    def environment_names(self):
        """Return every environment name and alias."""
        names = set(self.environments)
        names.update(e["alias"] for e in self.environments.values() if e["alias"])
        return names


def _suggest(word, choices):
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fmt_list(values):
    return ", ".join(str(v) for v in values)


class _Parser:
    def __init__(self, file):
        self.file = file
        self.errors = []
        self.warnings = []
        self.result = StacksConfig()

    # -- reporting
    def error(self, container, key, path, message):
        self.errors.append(Issue(self.file, line_of(container, key), path, message))

    def warn(self, container, key, path, message):
        self.warnings.append(Issue(self.file, line_of(container, key), path, message))

    # -- generic checks
    def mapping(self, value, container, key, path):
        """Return ``value`` if it is a mapping, else report and return None."""
        if isinstance(value, dict):
            return value
        if value is None:
            return LineDict()
        self.error(
            container, key, path, f"expected a mapping, got {type(value).__name__}"
        )
        return None

    def keys(self, doc, path, allowed, legacy=None, extra_ok=(), allow_x=False):
        """Report unknown keys of ``doc``; return the legacy ones found."""
        found_legacy = []
        for key in doc:
            if key in allowed or key in extra_ok:
                continue
            if legacy and key in legacy:
                self.warn(doc, key, f"{path}.{key}", f"ignored: {legacy[key]}")
                found_legacy.append(key)
                continue
            if isinstance(key, str) and key.startswith("x-") and (extra_ok or allow_x):
                continue
            choices = list(allowed) + list(extra_ok)
            self.error(
                doc,
                key,
                f"{path}.{key}" if path else str(key),
                f"unknown key {key!r}{_suggest(key, choices)}",
            )
        return found_legacy

    def boolean(self, doc, key, path, default):
        value = doc.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(doc, key, path, f"expected true or false, got {value!r}")
            return default
        return value

    def string(self, doc, key, path, default="", max_length=None):
        value = doc.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or isinstance(value, (dict, list)):
            self.error(doc, key, path, f"expected a string, got {type(value).__name__}")
            return default
        value = str(value)
        if max_length and len(value) > max_length:
            self.error(doc, key, path, f"longer than {max_length} characters")
        return value

    def name_list(self, doc, key, path):
        """Return ``(names, list)`` of a list of names (strings)."""
        value = doc.get(key)
        if value is None:
            return [], None
        if not isinstance(value, list):
            self.error(doc, key, path, "expected a list")
            return [], None
        names = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(value, i, path, f"expected a name, got {item!r}")
                continue
            if item in names:
                self.error(value, i, path, f"{item!r} is listed twice")
                continue
            names.append(item)
        return names, value

    def slug(self, container, key, path, name, max_length):
        if not isinstance(name, str) or not _SLUG_RE.match(name):
            self.error(
                container,
                key,
                path,
                f"invalid name {name!r}: use letters, digits, '-' and '_'",
            )
            return False
        if len(name) > max_length:
            self.error(
                container, key, path, f"name longer than {max_length} characters"
            )
            return False
        return True

    def references_ok(self, container, key, path, value):
        for text in invalid_references(value):
            self.error(
                container,
                key,
                path,
                f"invalid variable reference in {text!r} (write $$ for a literal $)",
            )

    # -- document
    def parse(self, doc):
        if not isinstance(doc, dict):
            self.errors.append(
                Issue(self.file, 1, "", "expected a mapping at the top level")
            )
            return self.result
        # "x-" keys hold YAML anchors for reuse, as in Compose.
        self.keys(doc, "", TOP_KEYS, allow_x=True)
        for key in REQUIRED_TOP_KEYS:
            if key not in doc:
                self.errors.append(Issue(self.file, 1, key, "missing required section"))
        self.parse_config(doc)
        volumes_doc = self.mapping(doc.get("volumes"), doc, "volumes", "volumes")
        networks_doc = self.mapping(
            doc.get("stack_networks"), doc, "stack_networks", "stack_networks"
        )
        services_doc = self.mapping(doc.get("services"), doc, "services", "services")
        stacks_doc = self.mapping(doc.get("stacks"), doc, "stacks", "stacks")
        envs_doc = self.mapping(
            doc.get("environments"), doc, "environments", "environments"
        )
        if volumes_doc is not None:
            self.parse_volumes(volumes_doc)
        if networks_doc is not None:
            self.parse_networks(networks_doc)
        if services_doc is not None:
            self.parse_services(services_doc)
        if stacks_doc is not None:
            self.parse_stacks(stacks_doc)
        self.check_ownership()
        self.check_service_dependencies()
        self.check_service_volumes()
        self.check_default_subnets()
        if envs_doc is not None:
            self.parse_environments(envs_doc)
            self.check_environments()
        return self.result

    # -- config
    def parse_config(self, doc):
        config = dict(DEFAULT_CONFIG)
        self.result.config = config
        if "config" not in doc:
            return
        section = self.mapping(doc["config"], doc, "config", "config")
        if section is None:
            return
        self.keys(
            section,
            "config",
            CONFIG_KEYS,
            LEGACY_CONFIG_KEYS,
            extra_ok=("health_checks",),
        )
        config["project_name"] = self.string(
            section,
            "project_name",
            "config.project_name",
            DEFAULT_CONFIG["project_name"],
        )
        restart = self.string(
            section,
            "default_restart_policy",
            "config.default_restart_policy",
            DEFAULT_CONFIG["default_restart_policy"],
        )
        if not _RESTART_RE.match(restart):
            self.error(
                section,
                "default_restart_policy",
                "config.default_restart_policy",
                f"invalid restart policy {restart!r} "
                "(no, always, unless-stopped, on-failure[:N])",
            )
        config["default_restart_policy"] = restart
        key = "healthcheck_templates"
        if "health_checks" in section:
            # The seed's name for the same section.
            self.warn(
                section,
                "health_checks",
                "config.health_checks",
                "renamed to healthcheck_templates; read as such",
            )
            if key not in section:
                key = "health_checks"
        templates = self.mapping(section.get(key), section, key, f"config.{key}")
        parsed = {}
        for name, values in (templates or {}).items():
            path = f"config.{key}.{name}"
            values = self.mapping(values, templates, name, path)
            if values is None:
                continue
            self.keys(values, path, TEMPLATE_KEYS)
            parsed[str(name)] = self.healthcheck_values(values, path)
        config["healthcheck_templates"] = parsed

    def healthcheck_values(self, values, path):
        result = {}
        for key, value in values.items():
            if key in ("interval", "timeout", "start_period", "start_interval"):
                if not isinstance(value, str) or not _DURATION_RE.match(value):
                    self.error(
                        values,
                        key,
                        f"{path}.{key}",
                        f"invalid duration {value!r} (e.g. 30s, 1m30s, 500ms)",
                    )
                    continue
            elif key == "retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    self.error(
                        values, key, f"{path}.{key}", f"expected a count, got {value!r}"
                    )
                    continue
            elif key == "disable":
                if not isinstance(value, bool):
                    self.error(values, key, f"{path}.{key}", "expected true or false")
                    continue
            elif key == "test":
                if isinstance(value, list):
                    if not value or not all(isinstance(v, str) for v in value):
                        self.error(
                            values, key, f"{path}.{key}", "expected a list of strings"
                        )
                        continue
                    if value[0] not in ("CMD", "CMD-SHELL", "NONE"):
                        self.error(
                            values,
                            key,
                            f"{path}.{key}",
                            "a test list starts with CMD, CMD-SHELL or NONE",
                        )
                        continue
                    value = list(value)
                elif not isinstance(value, str):
                    self.error(
                        values, key, f"{path}.{key}", "expected a string or a list"
                    )
                    continue
                self.references_ok(values, key, f"{path}.{key}", value)
            elif key == "template":
                value = str(value)
            result[key] = value
        return result

    # -- volumes and networks
    def parse_volumes(self, doc):
        allowed = _fmt_list(DataType.values)
        for name, values in doc.items():
            path = f"volumes.{name}"
            if not self.slug(doc, name, path, name, 80):
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(values, path, VOLUME_KEYS)
            data_type = values.get("data_type")
            if data_type is None:
                self.error(
                    values or doc,
                    "data_type" if values else name,
                    f"{path}.data_type",
                    f"missing data type (allowed: {allowed})",
                )
            elif data_type not in DataType.values:
                self.error(
                    values,
                    "data_type",
                    f"{path}.data_type",
                    f"unknown data type {data_type!r} (allowed: {allowed})",
                )
            self.result.volumes[name] = {
                "stack": None,
                "driver": self.string(values, "driver", f"{path}.driver", "local")
                or "local",
                "data_type": data_type if data_type in DataType.values else "",
                "description": self.string(
                    values, "description", f"{path}.description", max_length=200
                ),
                "_doc": (doc, name),
            }

    def parse_networks(self, doc):
        for name, values in doc.items():
            path = f"stack_networks.{name}"
            if not self.slug(doc, name, path, name, 80):
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(values, path, NETWORK_KEYS)
            network = {
                "stack": None,
                "driver": self.string(values, "driver", f"{path}.driver", "bridge")
                or "bridge",
                "subnet": "",
                "gateway": None,
                "internal": self.boolean(values, "internal", f"{path}.internal", False),
                "_doc": (doc, name),
                "_subnet_at": (values, "ipam"),
            }
            self.result.networks[name] = network
            ipam = self.mapping(values.get("ipam"), values, "ipam", f"{path}.ipam")
            if ipam is None:
                continue
            self.keys(ipam, f"{path}.ipam", IPAM_KEYS)
            driver = ipam.get("driver", "default")
            if driver not in (None, "default"):
                self.error(
                    ipam,
                    "driver",
                    f"{path}.ipam.driver",
                    f"only the default IPAM driver is supported, got {driver!r}",
                )
            configs = ipam.get("config")
            if not isinstance(configs, list) or len(configs) != 1:
                self.error(
                    ipam if "config" in ipam else values,
                    "config" if "config" in ipam else "ipam",
                    f"{path}.ipam.config",
                    "expected a list with exactly one {subnet, gateway} entry",
                )
                continue
            entry = self.mapping(configs[0], configs, 0, f"{path}.ipam.config[0]")
            if entry is None:
                continue
            cpath = f"{path}.ipam.config[0]"
            self.keys(entry, cpath, IPAM_CONFIG_KEYS)
            subnet, gateway = self.subnet_and_gateway(entry, cpath)
            network["subnet"] = subnet or ""
            network["gateway"] = gateway
            network["_subnet_at"] = (entry, "subnet")

    def subnet_and_gateway(self, entry, path, required=True):
        """Return ``(subnet, gateway)`` of a mapping; None where invalid."""
        subnet = entry.get("subnet")
        net = None
        if subnet is None:
            if required:
                self.error(entry, None, f"{path}.subnet", "missing subnet")
            return None, None
        try:
            net = ipaddress.ip_network(str(subnet))
        except ValueError as exc:
            self.error(
                entry,
                "subnet",
                f"{path}.subnet",
                f"{subnet!r} is not a valid CIDR ({exc})",
            )
            return None, None
        gateway = entry.get("gateway")
        if gateway in (None, ""):
            return str(net), None
        try:
            address = ipaddress.ip_address(str(gateway))
        except ValueError:
            self.error(
                entry, "gateway", f"{path}.gateway", f"{gateway!r} is not an IP address"
            )
            return str(net), None
        if address not in net:
            self.error(
                entry, "gateway", f"{path}.gateway", f"{gateway} is not inside {net}"
            )
            return str(net), None
        return str(net), str(address)

    # -- services
    def parse_services(self, doc):
        templates = self.result.config["healthcheck_templates"]
        for name, values in doc.items():
            path = f"services.{name}"
            if not self.slug(doc, name, path, name, 80):
                continue
            if name == "networks":
                self.error(
                    doc,
                    name,
                    path,
                    "'networks' is reserved (environment overrides use it)",
                )
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(
                values,
                path,
                SERVICE_KEYS,
                LEGACY_SERVICE_KEYS,
                extra_ok=PASSTHROUGH_KEYS,
            )
            service = self.service_fields(values, path, templates, override=False)
            if not service["restart"]:
                service["restart"] = self.result.config["default_restart_policy"]
            service["stack"] = None
            service["order"] = 0
            depends, depends_doc = self.depends_on(values, path)
            service["depends_on"] = depends
            service["_depends_doc"] = depends_doc
            service["_doc"] = (doc, name)
            service["_values"] = values
            if not service.get("image") and not service.get("build"):
                self.error(doc, name, path, "a service needs an image or a build")
            self.result.services[name] = service

    def depends_on(self, values, path):
        value = values.get("depends_on")
        if value is None:
            return [], None
        if isinstance(value, dict):
            # Compose's long form: {service: {condition: ...}}.
            return [str(k) for k in value], _KeysAsList(value)
        names, listed = self.name_list(values, "depends_on", f"{path}.depends_on")
        return names, listed

    def service_fields(self, values, path, templates, *, override):
        """Return the model fields of a service (or override) mapping."""
        result = {}
        if not override:
            result["description"] = self.string(
                values, "description", f"{path}.description", max_length=200
            )
            result["category"] = self.string(
                values, "category", f"{path}.category", max_length=40
            )
            result["build"] = ""
            result["extra"] = {}
            build = values.get("build")
            if isinstance(build, dict):
                context = build.get("context")
                if not isinstance(context, str) or not context:
                    self.error(
                        values, "build", f"{path}.build", "a build needs a context"
                    )
                else:
                    result["build"] = context
                    if set(build) != {"context"}:
                        result["extra"]["build"] = dict(build)
            elif build is not None:
                result["build"] = self.string(
                    values, "build", f"{path}.build", max_length=255
                )
        present = (lambda k: k in values) if override else (lambda k: True)
        if present("image"):
            result["image"] = self.string(
                values, "image", f"{path}.image", max_length=255
            )
            self.references_ok(values, "image", f"{path}.image", result["image"])
        for key in ("command", "entrypoint"):
            if present(key):
                result[key] = self.command(values, key, f"{path}.{key}")
        if present("environment"):
            result["environment"] = self.environment(
                values, f"{path}.environment", allow_null=override
            )
        if present("ports"):
            result["ports"] = self.ports(values, f"{path}.ports")
        if present("volumes"):
            result["volumes"] = self.volumes(values, f"{path}.volumes")
        if present("healthcheck"):
            result["healthcheck"] = self.healthcheck(
                values, f"{path}.healthcheck", templates
            )
        if present("gpu"):
            result["gpu"] = self.boolean(values, "gpu", f"{path}.gpu", False)
        if present("gpu_count"):
            count = values.get("gpu_count", "all")
            text = "all" if count is None else str(count)
            if isinstance(count, bool) or not (
                text == "all" or (text.isdigit() and int(text) > 0)
            ):
                self.error(
                    values,
                    "gpu_count",
                    f"{path}.gpu_count",
                    f"expected 'all' or a count, got {count!r}",
                )
                text = "all"
            result["gpu_count"] = text
        if present("restart"):
            restart = self.string(values, "restart", f"{path}.restart", "")
            if restart and not _RESTART_RE.match(restart):
                self.error(
                    values,
                    "restart",
                    f"{path}.restart",
                    f"invalid restart policy {restart!r} (no, always, unless-stopped, "
                    "on-failure[:N])",
                )
            result["restart"] = restart
        if present("user"):
            result["user"] = self.string(values, "user", f"{path}.user", max_length=40)
        if present("shm_size"):
            shm = self.string(values, "shm_size", f"{path}.shm_size", max_length=20)
            if shm and not _SHM_RE.match(shm):
                self.error(
                    values, "shm_size", f"{path}.shm_size", f"invalid size {shm!r}"
                )
            result["shm_size"] = shm
        if present("extra"):
            extra = values.get("extra")
            if extra is None:
                extra = {}
            if not isinstance(extra, dict):
                self.error(values, "extra", f"{path}.extra", "expected a mapping")
                extra = {}
            if override:
                result["extra"] = _plain(extra)
            else:
                result["extra"].update(_plain(extra))
        if not override:
            for key in PASSTHROUGH_KEYS:
                if key in values:
                    result["extra"][key] = _plain(values[key])
            for key in values:
                if isinstance(key, str) and key.startswith("x-"):
                    result["extra"][key] = _plain(values[key])
        return result

    def command(self, values, key, path):
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            self.references_ok(values, key, path, value)
            return value
        if isinstance(value, list) and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
        ):
            items = [str(v) for v in value]
            self.references_ok(values, key, path, items)
            return items
        self.error(values, key, path, "expected a string or a list of strings")
        return None

    def environment(self, values, path, *, allow_null):
        value = values.get("environment")
        result = {}
        if value is None:
            return result
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) or "=" not in item:
                    self.error(value, i, path, f"expected NAME=value, got {item!r}")
                    continue
                name, _, text = item.partition("=")
                self.env_value(value, i, path, name, text, result, allow_null)
            return result
        if not isinstance(value, dict):
            self.error(
                values,
                "environment",
                path,
                "expected a mapping or a list of NAME=value",
            )
            return result
        for name, text in value.items():
            self.env_value(value, name, path, name, text, result, allow_null)
        return result

    def env_value(self, container, key, path, name, text, result, allow_null):
        name = str(name)
        if not _VAR_NAME_RE.match(name):
            self.error(
                container, key, f"{path}.{name}", f"invalid variable name {name!r}"
            )
            return
        if name in result:
            self.error(container, key, f"{path}.{name}", "variable set twice")
            return
        if text is None:
            if allow_null:
                result[name] = None
                return
            self.error(
                container,
                key,
                f"{path}.{name}",
                f"no value (write a value or a reference such as ${{{name}}})",
            )
            return
        if isinstance(text, bool):
            text = "true" if text else "false"
        elif isinstance(text, (int, float)):
            text = str(text)
        elif not isinstance(text, str):
            self.error(container, key, f"{path}.{name}", "expected a string value")
            return
        self.references_ok(container, key, f"{path}.{name}", text)
        result[name] = text

    def ports(self, values, path):
        value = values.get("ports")
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(values, "ports", path, "expected a list")
            return []
        result = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                self.error(
                    value, i, path, "only the short syntax is supported, e.g. '8080:80'"
                )
                continue
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.error(value, i, path, f"expected a port string, got {item!r}")
                continue
            text = str(item)
            if invalid_references(text):
                self.references_ok(value, i, path, text)
                continue
            try:
                parse_port(_with_defaults(text))
            except ValueError as exc:
                self.error(value, i, path, str(exc))
                continue
            result.append(text)
        return result

    def volumes(self, values, path):
        value = values.get("volumes")
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(values, "volumes", path, "expected a list")
            return []
        result = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(
                    value, i, path, f"only the short syntax is supported, got {item!r}"
                )
                continue
            parts = item.split(":")
            if len(parts) > 3 or not all(parts[:2]):
                self.error(value, i, path, f"{item!r} is not SOURCE:TARGET[:MODE]")
                continue
            if len(parts) == 3 and not set(parts[2].split(",")) <= _VOLUME_MODES:
                self.error(value, i, path, f"{item!r}: unknown mode {parts[2]!r}")
                continue
            if len(parts) >= 2 and not parts[1].startswith("/"):
                self.error(
                    value, i, path, f"{item!r}: the target must be an absolute path"
                )
                continue
            self.references_ok(value, i, path, item)
            result.append(item)
        return result

    def healthcheck(self, values, path, templates):
        value = values.get("healthcheck")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(values, "healthcheck", path, "expected a mapping")
            return {}
        self.keys(value, path, HEALTHCHECK_KEYS)
        parsed = self.healthcheck_values(value, path)
        template = parsed.get("template")
        if template and template not in templates:
            self.error(
                value,
                "template",
                f"{path}.template",
                f"unknown healthcheck template {template!r}"
                f"{_suggest(template, templates)} "
                f"(defined: {_fmt_list(templates) or 'none'})",
            )
            parsed.pop("template")
        return expand_healthcheck(parsed, templates)

    # -- stacks
    def parse_stacks(self, doc):
        owner_of_service, owner_of_network, owner_of_volume = {}, {}, {}
        for order, (name, values) in enumerate(doc.items()):
            path = f"stacks.{name}"
            if not self.slug(doc, name, path, name, 40):
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(values, path, STACK_KEYS)
            stack = {
                "description": self.string(
                    values, "description", f"{path}.description", max_length=200
                ),
                "order": order,
                "_doc": (doc, name),
                "_values": values,
            }
            services, listed = self.name_list(values, "services", f"{path}.services")
            stack["services"] = []
            for position, service in enumerate(services):
                index = listed.index(service)
                if service not in self.result.services:
                    self.error(
                        listed,
                        index,
                        f"{path}.services",
                        f"unknown service {service!r}"
                        f"{_suggest(service, self.result.services)}",
                    )
                    continue
                if service in owner_of_service:
                    self.error(
                        listed,
                        index,
                        f"{path}.services",
                        f"service {service!r} is already in stack "
                        f"{owner_of_service[service]!r}",
                    )
                    continue
                owner_of_service[service] = name
                self.result.services[service]["stack"] = name
                self.result.services[service]["order"] = position
                stack["services"].append(service)
            stack["dependencies"], stack["_dependencies_doc"] = self.name_list(
                values, "dependencies", f"{path}.dependencies"
            )
            for kind, key, owners, declared in (
                ("network", "networks", owner_of_network, self.result.networks),
                ("volume", "volumes", owner_of_volume, self.result.volumes),
            ):
                names, listed = self.name_list(values, key, f"{path}.{key}")
                stack[key] = []
                for item in names:
                    index = listed.index(item)
                    section = "stack_networks" if kind == "network" else "volumes"
                    if item not in declared:
                        self.error(
                            listed,
                            index,
                            f"{path}.{key}",
                            f"{kind} {item!r} is not declared in {section}"
                            f"{_suggest(item, declared)}",
                        )
                        continue
                    if item in owners:
                        self.error(
                            listed,
                            index,
                            f"{path}.{key}",
                            f"{kind} {item!r} already belongs to stack "
                            f"{owners[item]!r}",
                        )
                        continue
                    owners[item] = name
                    declared[item]["stack"] = name
                    stack[key].append(item)
            variables, listed = self.name_list(
                values, "environment_variables", f"{path}.environment_variables"
            )
            for variable in variables:
                if not _VAR_NAME_RE.match(variable):
                    self.error(
                        listed,
                        listed.index(variable),
                        f"{path}.environment_variables",
                        f"invalid variable name {variable!r}",
                    )
            stack["environment_variables"] = variables
            self.result.stacks[name] = stack
        # Dependencies once every stack is known.
        for name, stack in self.result.stacks.items():
            listed = stack["_dependencies_doc"]
            for dep in list(stack["dependencies"]):
                index = listed.index(dep)
                path = f"stacks.{name}.dependencies"
                if dep == name:
                    self.error(listed, index, path, "a stack cannot depend on itself")
                    stack["dependencies"].remove(dep)
                elif dep not in self.result.stacks:
                    self.error(
                        listed,
                        index,
                        path,
                        f"unknown stack {dep!r}{_suggest(dep, self.result.stacks)}",
                    )
                    stack["dependencies"].remove(dep)
        self.check_stack_cycles()

    def check_stack_cycles(self):
        graph = {n: s["dependencies"] for n, s in self.result.stacks.items()}
        for cycle in _cycles(graph):
            start, closing = cycle[-2], cycle[-1]
            stack = self.result.stacks[start]
            listed = stack["_dependencies_doc"]
            self.error(
                listed,
                listed.index(closing),
                f"stacks.{start}.dependencies",
                f"dependency cycle between stacks: {' -> '.join(cycle)}",
            )
            # A cyclic graph has no order; later checks must not loop.
            if closing in stack["dependencies"]:
                stack["dependencies"].remove(closing)

    def check_ownership(self):
        for kind, items in (
            ("services", self.result.services),
            ("stack_networks", self.result.networks),
            ("volumes", self.result.volumes),
        ):
            for name, item in items.items():
                if item["stack"] is None:
                    container, key = item["_doc"]
                    self.error(
                        container,
                        key,
                        f"{kind}.{name}",
                        f"not listed in any stack's {kind.replace('stack_', '')}",
                    )

    def closure(self, stack):
        """Return the stacks ``stack`` depends on, transitively."""
        seen, todo = (
            set(),
            list(self.result.stacks.get(stack, {}).get("dependencies", [])),
        )
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(self.result.stacks.get(dep, {}).get("dependencies", []))
        return seen

    def check_service_dependencies(self):
        services = self.result.services
        for name, service in services.items():
            listed = service["_depends_doc"]
            path = f"services.{name}.depends_on"
            for dep in list(service["depends_on"]):
                index = listed.index(dep)
                if dep == name:
                    self.error(listed, index, path, "a service cannot depend on itself")
                    service["depends_on"].remove(dep)
                    continue
                if dep not in services:
                    self.error(
                        listed,
                        index,
                        path,
                        f"unknown service {dep!r}{_suggest(dep, services)}",
                    )
                    service["depends_on"].remove(dep)
                    continue
                own, other = service["stack"], services[dep]["stack"]
                if own and other and own != other and other not in self.closure(own):
                    self.error(
                        listed,
                        index,
                        path,
                        f"{dep!r} is in stack {other!r}, which stack {own!r} does not "
                        "depend on (add it to the stack's dependencies)",
                    )
        graph = {n: s["depends_on"] for n, s in services.items()}
        for cycle in _cycles(graph):
            start, closing = cycle[-2], cycle[-1]
            listed = services[start]["_depends_doc"]
            self.error(
                listed,
                listed.index(closing),
                f"services.{start}.depends_on",
                f"dependency cycle between services: {' -> '.join(cycle)}",
            )
            if closing in services[start]["depends_on"]:
                services[start]["depends_on"].remove(closing)

    def check_service_volumes(self):
        for name, service in self.result.services.items():
            doc = service["_values"]
            self.check_volume_refs(
                doc, f"services.{name}", service.get("volumes"), service["stack"]
            )

    def check_volume_refs(self, doc, path, volumes, stack):
        listed = doc.get("volumes") if isinstance(doc, dict) else None
        for item in volumes or []:
            source = item.split(":")[0]
            if ":" not in item or source.startswith((".", "/", "~", "$")):
                continue  # a bind mount or an anonymous volume
            index = (
                listed.index(item)
                if isinstance(listed, list) and item in listed
                else None
            )
            container = listed if index is not None else doc
            key = index if index is not None else "volumes"
            if source not in self.result.volumes:
                self.error(
                    container,
                    key,
                    f"{path}.volumes",
                    f"volume {source!r} is not declared in volumes"
                    f"{_suggest(source, self.result.volumes)}",
                )
                continue
            owner = self.result.volumes[source]["stack"]
            if stack and owner and owner != stack:
                self.error(
                    container,
                    key,
                    f"{path}.volumes",
                    f"volume {source!r} belongs to stack {owner!r}, not {stack!r}",
                )

    def ordered_networks(self):
        """Return ``(name, subnet, gateway)`` in stack order (allocation order)."""
        stacks = self.result.stacks
        rows = [
            (stacks[n["stack"]]["order"], n["stack"], name, n)
            for name, n in self.result.networks.items()
            if n["stack"] in stacks and n["subnet"]
        ]
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return [(name, n["subnet"], n["gateway"] or "") for _, _, name, n in rows]

    def check_default_subnets(self):
        seen = []
        for name, network in self.result.networks.items():
            if not network["subnet"]:
                continue
            net = ipaddress.ip_network(network["subnet"])
            for other_name, other_net, other in seen:
                if net.overlaps(other_net):
                    container, key = network["_subnet_at"]
                    self.error(
                        container,
                        key,
                        f"stack_networks.{name}.ipam.config[0].subnet",
                        f"{net} of network {name} (stack {network['stack']}) overlaps "
                        f"{other_net} of network {other_name} (stack {other['stack']})",
                    )
                    break
            seen.append((name, net, network))

    # -- environments
    def parse_environments(self, doc):
        templates = self.result.config["healthcheck_templates"]
        for order, (name, values) in enumerate(doc.items()):
            path = f"environments.{name}"
            if not self.slug(doc, name, path, name, 40):
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(values, path, ENVIRONMENT_KEYS, LEGACY_ENVIRONMENT_KEYS)
            env = {"order": order, "_doc": (doc, name), "_values": values}
            for key, default in ENVIRONMENT_DEFAULTS.items():
                kpath = f"{path}.{key}"
                if isinstance(default, bool):
                    env[key] = self.boolean(values, key, kpath, default)
                elif key == "port_offset":
                    value = values.get(key, 0)
                    if value is None:
                        value = 0
                    if (
                        isinstance(value, bool)
                        or not isinstance(value, int)
                        or not (0 <= value < 65535)
                    ):
                        self.error(
                            values,
                            key,
                            kpath,
                            f"expected a number 0-65534, got {value!r}",
                        )
                        value = 0
                    env[key] = value
                elif key == "settings":
                    env[key] = self.environment_settings(values, kpath)
                else:
                    env[key] = self.string(values, key, kpath, default, max_length=200)
            if env["alias"]:
                self.slug(values, "alias", f"{path}.alias", env["alias"], 20)
            if not _DOCKER_HOST_RE.match(env["docker_host"]):
                self.error(
                    values,
                    "docker_host",
                    f"{path}.docker_host",
                    f"{env['docker_host']!r} is not a Docker URL (unix://, tcp://, ssh://)",
                )
            try:
                ipaddress.ip_address(env["bind_address"])
            except ValueError:
                self.error(
                    values,
                    "bind_address",
                    f"{path}.bind_address",
                    f"{env['bind_address']!r} is not an IP address",
                )
                env["bind_address"] = ENVIRONMENT_DEFAULTS["bind_address"]
            if env["subnet_pool"]:
                try:
                    ipaddress.ip_network(env["subnet_pool"])
                except ValueError as exc:
                    self.error(
                        values,
                        "subnet_pool",
                        f"{path}.subnet_pool",
                        f"{env['subnet_pool']!r} is not a valid CIDR ({exc})",
                    )
                    env["subnet_pool"] = ""
            self.environment_overrides(values, path, env, templates)
            self.result.environments[name] = env
        self.check_aliases()

    def environment_settings(self, values, path):
        settings = self.mapping(values.get("settings"), values, "settings", path)
        if settings is None:
            return {}
        variables = settings.get("variables")
        if variables is not None:
            if not isinstance(variables, dict):
                self.error(
                    settings, "variables", f"{path}.variables", "expected a mapping"
                )
            else:
                for name, value in variables.items():
                    if not _VAR_NAME_RE.match(str(name)):
                        self.error(
                            variables,
                            name,
                            f"{path}.variables.{name}",
                            "invalid variable name",
                        )
                    elif isinstance(value, (dict, list)):
                        self.error(
                            variables,
                            name,
                            f"{path}.variables.{name}",
                            "expected a scalar value",
                        )
        return _plain(settings)

    def environment_overrides(self, values, path, env, templates):
        env["service_overrides"] = {}
        env["network_overrides"] = {}
        overrides = self.mapping(
            values.get("overrides"), values, "overrides", f"{path}.overrides"
        )
        if overrides is None:
            return
        services = self.result.services
        for key, value in overrides.items():
            opath = f"{path}.overrides.{key}"
            if key == "networks":
                networks = self.mapping(value, overrides, key, opath)
                for net_name, entry in (networks or {}).items():
                    npath = f"{opath}.{net_name}"
                    if net_name not in self.result.networks:
                        self.error(
                            networks,
                            net_name,
                            npath,
                            f"unknown network {net_name!r}"
                            f"{_suggest(net_name, self.result.networks)}",
                        )
                        continue
                    entry = self.mapping(entry, networks, net_name, npath)
                    if entry is None:
                        continue
                    self.keys(entry, npath, IPAM_CONFIG_KEYS)
                    subnet, gateway = self.subnet_and_gateway(entry, npath)
                    if subnet:
                        env["network_overrides"][net_name] = {
                            "subnet": subnet,
                            "gateway": gateway,
                            "_at": (entry, "subnet"),
                        }
                continue
            if key not in services:
                self.error(
                    overrides,
                    key,
                    opath,
                    f"unknown service {key!r}{_suggest(key, [*services, 'networks'])}",
                )
                continue
            value = self.mapping(value, overrides, key, opath)
            if value is None:
                continue
            for item in value:
                if item not in OVERRIDE_KEYS:
                    hint = _suggest(item, OVERRIDE_KEYS)
                    if not hint and item in PASSTHROUGH_KEYS:
                        hint = " (Compose keys go under 'extra')"
                    self.error(
                        value, item, f"{opath}.{item}", f"unknown key {item!r}{hint}"
                    )
            fields = self.service_fields(value, opath, templates, override=True)
            if "volumes" in fields:
                self.check_volume_refs(
                    value, opath, fields["volumes"], services[key]["stack"]
                )
            env["service_overrides"][key] = {"values": fields, "_at": (overrides, key)}

    def check_aliases(self):
        envs = self.result.environments
        taken = {}
        for name in envs:
            taken[name] = f"environment {name}"
        for name, env in envs.items():
            alias = env["alias"]
            if not alias:
                continue
            if alias in taken and taken[alias] != f"environment {name}":
                values = env["_values"]
                self.error(
                    values,
                    "alias",
                    f"environments.{name}.alias",
                    f"{alias!r} is already taken by {taken[alias]}",
                )
                continue
            taken[alias] = f"alias of {name}"

    # -- cross checks per environment
    def check_environments(self):
        networks = self.ordered_networks()
        plans = {}
        for name, env in self.result.environments.items():
            values = env["_values"]
            overrides = {
                net: (o["subnet"], o["gateway"] or "")
                for net, o in env["network_overrides"].items()
            }
            try:
                plans[name] = allocate_subnets(networks, env["subnet_pool"], overrides)
            except ValueError as exc:
                self.error(
                    values, "subnet_pool", f"environments.{name}.subnet_pool", str(exc)
                )
                continue
            self.check_plan_overlaps(name, env, plans[name])
            self.check_secret_refs(name, env)
            env["_published"] = self.published(env)
        self.check_shared_hosts(plans)

    def _plan_location(self, env, network):
        """Return ``(container, key, path)`` where ``network``'s subnet comes from."""
        name = env["_doc"][1]
        values = env["_values"]
        if network in env["network_overrides"]:
            container, key = env["network_overrides"][network]["_at"]
            return (
                container,
                key,
                f"environments.{name}.overrides.networks.{network}.subnet",
            )
        if env["subnet_pool"]:
            return values, "subnet_pool", f"environments.{name}.subnet_pool"
        container, key = self.result.networks[network]["_subnet_at"]
        return container, key, f"stack_networks.{network}.ipam.config[0].subnet"

    def check_plan_overlaps(self, name, env, plan):
        items = list(plan.items())
        for i, (net_a, planned_a) in enumerate(items):
            a = ipaddress.ip_network(planned_a.subnet)
            for net_b, planned_b in items[:i]:
                b = ipaddress.ip_network(planned_b.subnet)
                if not a.overlaps(b):
                    continue
                # Default subnets overlapping each other are reported once,
                # at the network (check_default_subnets).
                if (
                    not env["subnet_pool"]
                    and net_a not in env["network_overrides"]
                    and net_b not in env["network_overrides"]
                ):
                    continue
                container, key, path = self._plan_location(env, net_a)
                self.error(
                    container,
                    key,
                    path,
                    f"in environment {name}, {a} of network {net_a} overlaps {b} of "
                    f"network {net_b}",
                )

    def check_shared_hosts(self, plans):
        names = list(plans)
        for i, name_a in enumerate(names):
            env_a = self.result.environments[name_a]
            for name_b in names[:i]:
                env_b = self.result.environments[name_b]
                if env_a["docker_host"] != env_b["docker_host"]:
                    continue
                pools = env_a["subnet_pool"], env_b["subnet_pool"]
                if all(pools) and ipaddress.ip_network(pools[0]).overlaps(
                    ipaddress.ip_network(pools[1])
                ):
                    self.error(
                        env_a["_values"],
                        "subnet_pool",
                        f"environments.{name_a}.subnet_pool",
                        f"environments {name_a} and {name_b} share Docker host "
                        f"{env_a['docker_host']} but subnet pool {pools[0]} overlaps "
                        f"{pools[1]} (give each environment its own subnet_pool)",
                    )
                    clash = None
                else:
                    clash = self._first_overlap(plans[name_a], plans[name_b])
                if clash:
                    net_a, sub_a, net_b, sub_b = clash
                    first, second = (name_a, env_a), (name_b, env_b)
                    if not env_a["subnet_pool"] and env_b["subnet_pool"]:
                        # Blame the environment whose pool can move.
                        first, second = second, first
                        net_a, sub_a, net_b, sub_b = net_b, sub_b, net_a, sub_a
                    container, key, path = self._plan_location(first[1], net_a)
                    self.error(
                        container,
                        key,
                        path,
                        f"environments {first[0]} and {second[0]} share Docker host "
                        f"{env_a['docker_host']} but {sub_a} of network {net_a} in "
                        f"{first[0]} overlaps {sub_b} of network {net_b} in "
                        f"{second[0]} (give each environment its own subnet_pool)",
                    )
                port_clash = self._first_port_clash(env_a, env_b)
                if port_clash:
                    values = env_a["_values"]
                    self.error(
                        values,
                        "port_offset",
                        f"environments.{name_a}.port_offset",
                        f"environments {name_a} and {name_b} share Docker host "
                        f"{env_a['docker_host']} but both publish {port_clash} "
                        "(choose port offsets further apart)",
                    )

    @staticmethod
    def _first_overlap(plan_a, plan_b):
        for net_a, planned_a in plan_a.items():
            a = ipaddress.ip_network(planned_a.subnet)
            for net_b, planned_b in plan_b.items():
                b = ipaddress.ip_network(planned_b.subnet)
                if a.overlaps(b):
                    return net_a, a, net_b, b
        return None

    def effective(self, env, name):
        service = {
            k: v for k, v in self.result.services[name].items() if not k.startswith("_")
        }
        override = env["service_overrides"].get(name, {}).get("values", {})
        return merge_service(service, override, gpu_enabled=env["gpu_enabled"])

    def published(self, env):
        """Return ``{(host_ip, port, protocol): service}``; report clashes."""
        variables = {
            str(k): "" if v is None else str(v)
            for k, v in ((env["settings"] or {}).get("variables") or {}).items()
        }
        result = {}
        for name in self.result.services:
            ports = self.effective(env, name)["ports"]
            for text in ports:
                try:
                    published = publish(
                        [text],
                        offset=env["port_offset"],
                        bind_address=env["bind_address"],
                        environ=variables,
                        service=name,
                    )
                except ValueError as exc:
                    self.port_error(env, name, str(exc))
                    continue
                except Exception:  # noqa: BLE001 - an unset variable: not checkable
                    continue
                for port in published:
                    if port.published is None:
                        continue
                    key = (port.host_ip, port.published, port.protocol)
                    if key in result and result[key] != name:
                        self.port_error(
                            env,
                            name,
                            f"{port.host_ip}:{port.published}/{port.protocol} is also "
                            f"published by service {result[key]}",
                        )
                    result.setdefault(key, name)
        return result

    def port_error(self, env, service, message):
        env_name = env["_doc"][1]
        if (
            service in env["service_overrides"]
            and "ports" in (env["service_overrides"][service]["values"])
        ):
            container, key = env["service_overrides"][service]["_at"]
            path = f"environments.{env_name}.overrides.{service}.ports"
        else:
            container, key = self.result.services[service]["_values"], "ports"
            path = f"services.{service}.ports"
        self.error(container, key, path, f"in environment {env_name}: {message}")

    def _first_port_clash(self, env_a, env_b):
        published_b = env_b.get("_published") or {}
        for (ip, port, protocol), service in (env_a.get("_published") or {}).items():
            for (ip_b, port_b, protocol_b), service_b in published_b.items():
                if port == port_b and protocol == protocol_b and _ips_overlap(ip, ip_b):
                    return (
                        f"port {port}/{protocol} (service {service} and service "
                        f"{service_b})"
                    )
        return None

    def check_secret_refs(self, name, env):
        if not env["require_secret_refs"]:
            return
        for service_name, service in self.result.services.items():
            override = env["service_overrides"].get(service_name, {}).get("values", {})
            effective = self.effective(env, service_name)["environment"]
            for variable, value in effective.items():
                if not is_secret_name(variable) or is_reference(value):
                    continue
                overridden = variable in (override.get("environment") or {})
                if overridden:
                    container, key = env["service_overrides"][service_name]["_at"]
                    container, key = _env_location(container[key], variable)
                    path = f"environments.{name}.overrides.{service_name}.environment"
                else:
                    container, key = _env_location(service["_values"], variable)
                    path = f"services.{service_name}.environment"
                self.error(
                    container,
                    key,
                    f"{path}.{variable}",
                    f"plain value where environment {name} requires a ${{VAR}} "
                    "reference (require_secret_refs; defaults are not allowed either)",
                )
        variables = (env["settings"] or {}).get("variables") or {}
        for variable in variables:
            if is_secret_name(variable):
                settings = _child(env["_values"], None, "settings")
                self.error(
                    _child(settings, None, "variables"),
                    variable,
                    f"environments.{name}.settings.variables.{variable}",
                    f"secret variables cannot be set in the file where environment "
                    f"{name} requires ${{VAR}} references",
                )


class _KeysAsList(list):
    """The keys of a long-form depends_on mapping, with their lines."""

    def __init__(self, mapping):
        super().__init__(str(k) for k in mapping)
        lines = getattr(mapping, "lines", {})
        self.lines = [lines.get(k, getattr(mapping, "line", 0)) for k in mapping]
        self.line = getattr(mapping, "line", 0)


def _env_location(values, variable):
    """Return ``(container, key)`` of ``variable`` in a service's environment."""
    environment = values.get("environment") if isinstance(values, dict) else None
    if isinstance(environment, dict):
        return environment, variable
    if isinstance(environment, list):
        for i, item in enumerate(environment):
            if isinstance(item, str) and item.partition("=")[0] == variable:
                return environment, i
    return values, "environment"


def _child(container, key, name):
    """Return ``container[key][name]`` (or ``container[name]``) or the parent."""
    parent = container[key] if key is not None else container
    if isinstance(parent, dict) and isinstance(parent.get(name), (dict, list)):
        return parent[name]
    return parent


def _ips_overlap(a, b):
    unspecified = ("0.0.0.0", "::")
    return a == b or a in unspecified or b in unspecified


def _with_defaults(text):
    """Return ``text`` with references replaced by their defaults (or 1)."""
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}$]*))?\}|\$\$")

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        return match.group(2) if match.group(2) is not None else "1"

    return pattern.sub(substitute, text)


def _cycles(graph):
    """Yield each dependency cycle once, as ``[a, b, ..., a]``."""
    state, stack, found = {}, [], []

    def visit(node):
        state[node] = "active"
        stack.append(node)
        for dep in graph.get(node, []):
            if dep not in graph:
                continue
            if state.get(dep) == "active":
                found.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)
    return found


def _plain(value):
    """Return ``value`` with LineDict/LineList turned into dict/list."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_stacks(document, file):
    """Validate a loaded ``stacks.yaml`` document.

    Returns ``(StacksConfig, errors, warnings)``; the config is only
    meaningful when ``errors`` is empty.
    """
    parser = _Parser(file)
    result = parser.parse(document)
    return result, parser.errors, parser.warnings

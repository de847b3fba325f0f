"""Rules for environments, their overrides, and the checks across them."""

import ipaddress

from django.conf import settings as django_settings

from portal.redaction import is_secret_name

from ..addresses import ips_overlap
from ..secrets import is_reference
from .common import (
    DOCKER_HOST_RE,
    VAR_NAME_RE,
    child,
    env_location,
    plain,
    suggest,
)
from .keys import (
    ENVIRONMENT_DEFAULTS,
    ENVIRONMENT_KEYS,
    IPAM_CONFIG_KEYS,
    LEGACY_ENVIRONMENT_KEYS,
    OVERRIDE_KEYS,
    PASSTHROUGH_KEYS,
)
from .values import (
    allocate_subnets,
    merge_service,
    publish,
)

__all__ = ["EnvironmentRules"]


class EnvironmentRules:
    """Parse ``environments``; check plans, ports and secrets per environment."""

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
                elif key == "host_policy":
                    env[key] = self.host_policy(values, kpath)
                else:
                    env[key] = self.string(values, key, kpath, default, max_length=200)
            if env["alias"]:
                self.slug(values, "alias", f"{path}.alias", env["alias"], 20)
            if not DOCKER_HOST_RE.match(env["docker_host"]):
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
                    if not VAR_NAME_RE.match(str(name)):
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
        self.process_variables(settings, f"{path}.process_variables")
        self.credential_settings(settings, f"{path}.credentials")
        return plain(settings)

    def process_variables(self, settings, path):
        """Check ``settings.process_variables``: names of the worker's own
        environment variables the environment's services may read."""
        names, listed = self.name_list(settings, "process_variables", path)
        own = set(getattr(django_settings, "PORTAL_OWN_VARIABLES", ()))
        for i, name in enumerate(names):
            where = (listed, listed.index(name) if listed else i)
            if not VAR_NAME_RE.match(name):
                self.error(*where, path, f"invalid variable name {name!r}")
            elif name in own or name.startswith("PORTAL_"):
                self.error(
                    *where,
                    path,
                    f"{name} is a setting of the portal itself and is never passed "
                    "to services",
                )

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
                        self.unknown(
                            networks,
                            net_name,
                            npath,
                            "networks",
                            net_name,
                            f"unknown network {net_name!r}"
                            f"{suggest(net_name, self.result.networks)}",
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
                self.unknown(
                    overrides,
                    key,
                    opath,
                    "services",
                    key,
                    f"unknown service {key!r}{suggest(key, [*services, 'networks'])}",
                )
                continue
            value = self.mapping(value, overrides, key, opath)
            if value is None:
                continue
            for item in value:
                if item not in OVERRIDE_KEYS:
                    hint = suggest(item, OVERRIDE_KEYS)
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
            self.check_host_safety(name, env)
            env["_published"] = self.published(env)
        self.check_shared_hosts(plans)
        self.check_hardcoded_secrets()

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
                if port == port_b and protocol == protocol_b and ips_overlap(ip, ip_b):
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
                    container, key = env_location(container[key], variable)
                    path = f"environments.{name}.overrides.{service_name}.environment"
                else:
                    container, key = env_location(service["_values"], variable)
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
                settings = child(env["_values"], None, "settings")
                self.error(
                    child(settings, None, "variables"),
                    variable,
                    f"environments.{name}.settings.variables.{variable}",
                    f"secret variables cannot be set in the file where environment "
                    f"{name} requires ${{VAR}} references",
                )

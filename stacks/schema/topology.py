"""Rules for volumes, networks and stacks, and the checks between them."""

import ipaddress

from ..choices import DataType
from .common import (
    VAR_NAME_RE,
    cycles,
    fmt_list,
    suggest,
)
from .keys import (
    IPAM_CONFIG_KEYS,
    IPAM_KEYS,
    NETWORK_KEYS,
    STACK_KEYS,
    VOLUME_KEYS,
)

__all__ = ["TopologyRules"]


class TopologyRules:
    """Parse ``volumes``, ``stack_networks`` and ``stacks``; check their links."""

    # -- volumes and networks
    def parse_volumes(self, doc):
        allowed = fmt_list(DataType.values)
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
                    self.unknown(
                        listed,
                        index,
                        f"{path}.services",
                        "services",
                        service,
                        f"unknown service {service!r}"
                        f"{suggest(service, self.result.services)}",
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
                        self.unknown(
                            listed,
                            index,
                            f"{path}.{key}",
                            section,
                            item,
                            f"{kind} {item!r} is not declared in {section}"
                            f"{suggest(item, declared)}",
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
                if not VAR_NAME_RE.match(variable):
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
                    self.unknown(
                        listed,
                        index,
                        path,
                        "stacks",
                        dep,
                        f"unknown stack {dep!r}{suggest(dep, self.result.stacks)}",
                    )
                    stack["dependencies"].remove(dep)
        self.check_stack_cycles()

    def check_stack_cycles(self):
        graph = {n: s["dependencies"] for n, s in self.result.stacks.items()}
        for cycle in cycles(graph):
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
                    self.unknown(
                        listed,
                        index,
                        path,
                        "services",
                        dep,
                        f"unknown service {dep!r}{suggest(dep, services)}",
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
        for cycle in cycles(graph):
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
                    f"{suggest(source, self.result.volumes)}",
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

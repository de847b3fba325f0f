"""Rules for what a service may ask of the Docker host, per environment.

A container can be given the host itself: privileged mode, the host's PID,
IPC or network namespace, devices, capabilities, or a bind mount of any
host path (the Docker socket is root on the host). Each environment says by
name which of these its services may have, in ``host_policy``::

    host_policy:
      allow: [privileged, "pid: host", "network_mode: host", console]
      capabilities: [SYS_PTRACE]
      devices: [/dev/fuse]
      bind_mounts: [/var/log/multimodal, /var/run/docker.sock]

Without an entry a request is refused, naming the key, the service and the
environment. Bind mounts of paths inside the project directory (the
relative paths of the seed's files, ``./configs/nginx.conf``) need no
entry. A bind source with ``..`` in it, or whose path on this host passes
through a symbolic link, is refused whatever the policy says: neither is
what the path appears to name.

The same rules run on every path a change can take: the import, the admin
(through :mod:`stacks.config.gate`) and any later API.
"""

import os
from pathlib import PurePosixPath

from django.conf import settings

from .keys import HOST_POLICY_KEYS
from .values import is_bind_source, split_volume

__all__ = [
    "ALLOWABLE",
    "NAMESPACE_KEYS",
    "HostSafetyRules",
    "host_requests",
]

#: Keys whose value ``host`` shares a namespace of the host.
NAMESPACE_KEYS = ("pid", "ipc", "network_mode", "userns_mode", "uts", "cgroup")
#: The names ``allow`` takes (``security_opt: ...`` entries besides).
#: ``console`` is not asked by a service: it lets Admins open a shell in the
#: containers of a protected environment (see stacks.access).
ALLOWABLE = ("privileged", *(f"{key}: host" for key in NAMESPACE_KEYS), "console")
# security_opt values that switch a protection off.
_UNSAFE_SECURITY_OPT = ("unconfined", "label=disable", "label:disable")


def _normal(name):
    """Return an ``allow`` name in its canonical spelling (``pid: host``)."""
    key, sep, value = str(name).partition(":")
    return f"{key.strip()}: {value.strip()}" if sep else key.strip()


def _capability(name):
    return str(name).upper().removeprefix("CAP_")


def host_requests(extra, volumes):
    """Yield ``(key, name, detail)`` for what a service asks of the host.

    ``key`` is where it is asked (``extra.privileged``, ``volumes``...),
    ``name`` what a policy must allow, ``detail`` the value as written.
    Kinds of name: ``privileged``, ``pid: host`` and the other namespaces,
    ``security_opt: <value>``, ``capability:<NAME>``, ``device:<path>`` and
    ``bind:<source>``.
    """
    extra = extra or {}
    if extra.get("privileged") in (True, "true", "True", 1):
        yield "extra.privileged", "privileged", "true"
    for key in NAMESPACE_KEYS:
        if str(extra.get(key, "")).strip() == "host":
            yield f"extra.{key}", f"{key}: host", "host"
    for option in _as_list(extra.get("security_opt")):
        if any(unsafe in str(option) for unsafe in _UNSAFE_SECURITY_OPT):
            yield "extra.security_opt", f"security_opt: {option}", str(option)
    for capability in _as_list(extra.get("cap_add")):
        yield "extra.cap_add", f"capability:{_capability(capability)}", capability
    for device in _as_list(extra.get("devices")):
        if isinstance(device, dict):
            path = device.get("source") or device.get("PathOnHost") or ""
        else:
            path = str(device).split(":", 1)[0]
        yield "extra.devices", f"device:{path}", str(device)
    for entry in volumes or []:
        source = split_volume(entry)[0]
        if source and is_bind_source(source):
            yield "volumes", f"bind:{source}", str(entry)


def _as_list(value):
    if value in (None, "", [], {}):
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _inside(path, roots):
    return any(path == root or root in path.parents for root in roots)


def _first_link(path):
    """Return the first component of ``path`` that is a symbolic link."""
    current = PurePosixPath("/")
    for part in path.parts[1:]:
        current = current / part
        if os.path.islink(current):
            return current
    return path


class HostSafetyRules:
    """Parse ``host_policy`` and check every service against it."""

    def host_policy(self, values, path):
        """Return the environment's ``host_policy`` mapping, checked."""
        policy = self.mapping(values.get("host_policy"), values, "host_policy", path)
        if policy is None:
            return {}
        self.keys(policy, path, HOST_POLICY_KEYS)
        result = {}
        for key in HOST_POLICY_KEYS:
            names, listed = self.name_list(policy, key, f"{path}.{key}")
            if not names:
                continue
            for i, name in enumerate(names):
                where = (listed, listed.index(name) if listed else i)
                problem = self._policy_entry_problem(key, name)
                if problem:
                    self.error(*where, f"{path}.{key}", problem)
            if key == "allow":
                names = [_normal(n) for n in names]
            elif key == "capabilities":
                names = [_capability(n) for n in names]
            result[key] = names
        return result

    @staticmethod
    def _policy_entry_problem(key, name):
        if key == "allow":
            normal = _normal(name)
            if normal in ALLOWABLE or normal.startswith("security_opt: "):
                return None
            return (
                f"unknown name {name!r} (one of: {', '.join(ALLOWABLE)}, or "
                "'security_opt: <value>')"
            )
        if key in ("devices", "bind_mounts"):
            if not name.startswith("/"):
                return f"{name!r} is not an absolute path"
            if ".." in PurePosixPath(name).parts:
                return f"{name!r} goes up with '..'; name the path itself"
        return None

    def check_host_safety(self, name, env):
        """Report what the services of environment ``name`` ask of the host
        beyond its ``host_policy``."""
        policy = env.get("host_policy") or {}
        allowed = set(policy.get("allow") or [])
        capabilities = set(policy.get("capabilities") or [])
        devices = set(policy.get("devices") or [])
        roots = [PurePosixPath(p) for p in policy.get("bind_mounts") or []]
        policy_path = f"environments.{name}.host_policy"
        for service in self.result.services:
            effective = self.effective(env, service)
            for key, wanted, detail in host_requests(
                effective.get("extra"), effective.get("volumes")
            ):
                if wanted.startswith("capability:"):
                    capability = wanted.split(":", 1)[1]
                    if capability in capabilities:
                        continue
                    problem = (
                        f"capability {capability} is not allowed "
                        f"(add it to {policy_path}.capabilities)"
                    )
                elif wanted.startswith("device:"):
                    device = wanted.split(":", 1)[1]
                    if device in devices:
                        continue
                    problem = (
                        f"device {device or detail} is not allowed "
                        f"(add it to {policy_path}.devices)"
                    )
                elif wanted.startswith("bind:"):
                    problem = self._bind_problem(
                        wanted.split(":", 1)[1], roots, policy_path
                    )
                    if problem is None:
                        continue
                else:
                    if wanted in allowed:
                        continue
                    problem = (
                        f"{wanted!r} is not allowed (add it to {policy_path}.allow)"
                    )
                self._host_error(env, name, service, key, detail, problem)

    @staticmethod
    def _bind_problem(source, roots, policy_path):
        """Return why bind source ``source`` is refused, or None.

        The path is judged by where it really leads on this host: a
        symbolic link that takes an allowed-looking path (inside the
        project, say) somewhere else is refused, while a system link such
        as /var/run -> /run on both sides of the comparison is no escape.
        """
        if ".." in PurePosixPath(source).parts:
            return (
                f"bind mount source {source!r} goes up with '..'; name the path itself"
            )
        if source.startswith("~"):
            return (
                f"bind mount source {source!r} depends on the home directory of "
                "whoever starts it; name the path itself"
            )
        project = PurePosixPath(settings.BASE_DIR)
        path = PurePosixPath(source)
        if not path.is_absolute():
            path = project / path
        allowed = [project, *roots]
        real = PurePosixPath(os.path.realpath(path))
        if _inside(real, [PurePosixPath(os.path.realpath(r)) for r in allowed]):
            return None
        if _inside(path, allowed):
            link = _first_link(path)
            return (
                f"bind mount source {source!r} passes through the symbolic link "
                f"{link} and leads to {real}, outside the allowed paths"
            )
        return (
            f"bind mount source {source} is outside the project directory and "
            f"{policy_path}.bind_mounts (add it there to allow it)"
        )

    def _host_error(self, env, env_name, service, key, detail, problem):
        """Report ``problem`` at the line that asked for it: the list item
        when the request is one (a volume, a device), else its key."""
        top = key.split(".")[0]
        field = key.split(".", 1)[1] if "." in key else key
        override = env["service_overrides"].get(service)
        if override is not None and top in override["values"]:
            overrides, name = override["_at"]
            container = overrides[name]
            path = f"environments.{env_name}.overrides.{service}.{key}"
        else:
            container = self.result.services[service]["_values"]
            path = f"services.{service}.{key}"
            if top == "extra" and field in container:
                # A Compose key written at the service's top level.
                path = f"services.{service}.{field}"
        # Walk down to the most precise place: extra, the key, the item.
        if (
            top == "extra"
            and field not in container
            and isinstance(container.get("extra"), dict)
        ):
            container = container["extra"]
        ckey = field if top == "extra" else top
        if ckey not in container:
            ckey = None
        value = container.get(ckey) if ckey is not None else None
        if isinstance(value, list) and detail in [str(v) for v in value]:
            container, ckey = value, [str(v) for v in value].index(detail)
        self.error(container, ckey, path, f"in environment {env_name}, {problem}")

"""The Compose model of a stack in an environment, and its rendering.

:func:`stack_plan` turns the effective configuration (``stacks.config``) into
a :class:`StackPlan`: the services in start order, the networks (the stack's
own and, as external ones, those of the stacks it depends on) and the named
volumes, all with their Docker names and labels. The same plan is applied
through the Engine API by ``stacks.engine`` and written out as a standard
compose file by :func:`render_compose`, so what the portal creates is what
``docker compose -p <project> -f <rendered file> up`` would create.

Environment values keep their ``${VAR}`` references here; they are resolved
only when a container is created.
"""

import json
import shlex
from dataclasses import replace
from pathlib import Path

import yaml
from django.conf import settings

from portal.redaction import redact

from . import config
from .engine import labels
from .engine.specs import (
    GPU_DRIVER,
    HealthSpec,
    MountSpec,
    NetworkSpec,
    PortSpec,
    ServiceSpec,
    StackPlan,
    VolumeSpec,
    describe_spec,
    format_duration,
    network_docker_name,
    parse_duration,
    volume_docker_name,
)
from .models import Network, Service, Volume
from .schema.values import is_bind_source, split_volume

__all__ = [
    "compose_dict",
    "recorded_config",
    "render_compose",
    "resolve_spec",
    "stack_plan",
    "start_levels",
    "write_compose_files",
]


def resolve_spec(spec, resolve_all):
    """Return a copy of ``spec`` with every ``${VAR}`` reference resolved.

    ``resolve_all(value, service=...)`` resolves one value (see
    :func:`stacks.secrets.resolve_all`). The copy holds secret values: build
    it only to create the container, and never log or store it. What it
    was made from, as configured (references kept, secrets redacted), goes
    with it in ``recorded`` (stored on the container, see
    :func:`stacks.engine.describe_spec`).
    """
    health = spec.healthcheck
    if health is not None and health.test:
        health = replace(
            health, test=tuple(resolve_all(list(health.test), service=spec.name))
        )
    return replace(
        spec,
        image=resolve_all(spec.image, service=spec.name),
        command=resolve_all(spec.command, service=spec.name),
        entrypoint=resolve_all(spec.entrypoint, service=spec.name),
        environment=resolve_all(dict(spec.environment), service=spec.name),
        healthcheck=health,
        user=resolve_all(spec.user, service=spec.name),
        shm_size=resolve_all(spec.shm_size, service=spec.name),
        extra=resolve_all(dict(spec.extra), service=spec.name),
        recorded=spec.recorded or recorded_config(spec),
    )


def recorded_config(spec):
    """Return what ``spec`` (unresolved) is made from, redacted, as compact JSON."""
    return json.dumps(
        redact(describe_spec(spec)), sort_keys=True, separators=(",", ":")
    )


def start_levels(services):
    """Group ``services`` (specs) into levels: each depends only on earlier ones.

    Raises ValueError on a dependency cycle inside the stack.
    """
    names = {s.name for s in services}
    pending = {s.name: {d for d in s.depends_on if d in names} for s in services}
    order = {s.name: i for i, s in enumerate(services)}
    by_name = {s.name: s for s in services}
    levels, done = [], set()
    while pending:
        ready = sorted(
            (n for n, deps in pending.items() if deps <= done), key=order.get
        )
        if not ready:
            raise ValueError(
                "Dependency cycle between services: " + ", ".join(sorted(pending))
            )
        levels.append([by_name[n] for n in ready])
        done.update(ready)
        for n in ready:
            del pending[n]
    return levels


# --------------------------------------------------------------------------
# Building the plan from the configuration


def _command(value):
    """Return a command as a list (Compose splits strings like a shell)."""
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _health(value):
    if not value:
        return None
    if value.get("disable") in (True, "true", "True"):
        return HealthSpec(disable=True)
    test = value.get("test") or ()
    if isinstance(test, str):
        test = ("CMD-SHELL", test)
    retries = value.get("retries")
    return HealthSpec(
        test=tuple(str(t) for t in test),
        interval=parse_duration(value.get("interval")),
        timeout=parse_duration(value.get("timeout")),
        retries=None if retries in (None, "") else int(retries),
        start_period=parse_duration(value.get("start_period")),
    )


def _bind_source(source):
    """Return the absolute host path of a bind source.

    Relative paths are relative to the project root (where the seed's
    compose files lived), as Compose resolves them from the file's folder.
    """
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path(settings.BASE_DIR) / path
    return str(path)


def stack_plan(environment, stack):
    """Return the :class:`StackPlan` of ``stack`` in ``environment``."""
    project = environment.project_name(stack)
    stack_labels = labels.base_labels(environment, stack)
    dependencies = stack.dependency_closure()
    subnets = config.network_plan(environment)

    networks = []
    for owner in [stack, *dependencies]:
        owner_project = environment.project_name(owner)
        for network in Network.objects.filter(stack=owner).order_by("name"):
            subnet, gateway = subnets.get(network.name) or (
                network.subnet,
                network.gateway,
            )
            networks.append(
                NetworkSpec(
                    key=network.name,
                    docker_name=network_docker_name(owner_project, network.name),
                    stack=owner.name,
                    project=owner_project,
                    subnet=str(subnet or ""),
                    gateway=str(gateway or ""),
                    driver=network.driver,
                    internal=network.internal,
                    external=owner.pk != stack.pk,
                    labels=labels.base_labels(environment, owner),
                )
            )
    network_map = {n.docker_name: n.key for n in networks}

    volumes_by_name = {v.name: v for v in Volume.objects.select_related("stack").all()}
    volumes = {}

    def volume_spec(name):
        if name not in volumes:
            row = volumes_by_name.get(name)
            owner = row.stack if row is not None else stack
            owner_project = environment.project_name(owner)
            data_type = row.data_type if row is not None else ""
            volumes[name] = VolumeSpec(
                key=name,
                docker_name=volume_docker_name(owner_project, name),
                stack=owner.name,
                project=owner_project,
                data_type=data_type,
                driver=row.driver if row is not None else "local",
                external=owner.pk != stack.pk,
                labels={
                    **labels.base_labels(environment, owner),
                    **({labels.DATA_TYPE: data_type} if data_type else {}),
                },
            )
        return volumes[name]

    # Volumes the stack declares exist even when no service mounts them.
    for row in Volume.objects.filter(stack=stack).order_by("name"):
        volume_spec(row.name)

    services = []
    rows = Service.objects.filter(stack=stack).prefetch_related("depends_on__stack")
    for service in rows:
        eff = config.effective_service(service, environment)
        mounts = []
        for entry in eff.get("volumes") or []:
            source, target, read_only, kind = split_volume(entry)
            if kind == "tmpfs":
                mounts.append(MountSpec("tmpfs", target))
            elif kind == "bind" or (source and is_bind_source(source)):
                mounts.append(
                    MountSpec("bind", target, _bind_source(source), read_only, source)
                )
            elif source:
                spec = volume_spec(source)
                mounts.append(
                    MountSpec("volume", target, spec.docker_name, read_only, source)
                )
            else:
                # An anonymous volume, as "- /data" in Compose.
                mounts.append(MountSpec("volume", target, "", read_only, ""))
        extra = dict(eff.get("extra") or {})
        user_labels = extra.pop("labels", None) or {}
        if isinstance(user_labels, list):
            user_labels = dict(item.split("=", 1) for item in user_labels)
        same, other = [], []
        for dep in service.depends_on.all():
            if dep.stack_id == stack.pk:
                same.append(dep.name)
            else:
                other.append((dep.stack.name, dep.name))
        services.append(
            ServiceSpec(
                name=service.name,
                stack=stack.name,
                project=project,
                image=eff.get("image") or service.image,
                build=str(eff.get("build") or service.build or ""),
                command=_command(eff.get("command")),
                entrypoint=_command(eff.get("entrypoint")),
                environment={
                    str(k): "" if v is None else str(v)
                    for k, v in (eff.get("environment") or {}).items()
                },
                # PublishedPort has PortSpec's fields: offset and bind
                # address applied, ${VAR:-default} references resolved.
                ports=[
                    PortSpec(*port)
                    for port in config.published_ports(service, environment)
                ],
                mounts=mounts,
                networks=dict(network_map),
                aliases=[service.name],
                healthcheck=_health(eff.get("healthcheck")),
                depends_on=sorted(same),
                external_depends_on=sorted(other),
                gpu=bool(eff.get("gpu")) and environment.gpu_enabled,
                gpu_count=str(eff.get("gpu_count") or "all"),
                shm_size=str(eff.get("shm_size") or ""),
                user=str(eff.get("user") or ""),
                restart=str(eff.get("restart") or "unless-stopped"),
                labels={
                    **{str(k): str(v) for k, v in user_labels.items()},
                    **stack_labels,
                    labels.COMPOSE_PROJECT: project,
                    labels.COMPOSE_SERVICE: service.name,
                    labels.COMPOSE_CONTAINER_NUMBER: "1",
                    labels.COMPOSE_ONEOFF: "False",
                    labels.SERVICE: service.name,
                },
                extra=extra,
            )
        )
    ordered = [s for level in start_levels(services) for s in level]
    return StackPlan(
        environment=environment,
        stack=stack,
        project=project,
        services=ordered,
        networks=networks,
        volumes=list(volumes.values()),
        dependency_stacks=[s.name for s in dependencies],
    )


# --------------------------------------------------------------------------
# Rendering


def _compose_mount(mount):
    entry = {"type": mount.type, "target": mount.target}
    if mount.type == "volume" and mount.key:
        entry["source"] = mount.key
    elif mount.type == "bind":
        entry["source"] = mount.source
    if mount.read_only:
        entry["read_only"] = True
    return entry


def _compose_health(health):
    if health.disable:
        return {"disable": True}
    entry = {}
    if health.test:
        entry["test"] = list(health.test)
    for key in ("interval", "timeout", "start_period"):
        value = getattr(health, key)
        if value is not None:
            entry[key] = format_duration(value)
    if health.retries is not None:
        entry["retries"] = health.retries
    return entry


def _compose_build(build):
    """Return ``build`` with its context made absolute (see _bind_source)."""
    if isinstance(build, str):
        return {"context": _bind_source(build)}
    build = dict(build)
    if build.get("context") and "://" not in str(build["context"]):
        build["context"] = _bind_source(str(build["context"]))
    return build


def _compose_labels(values):
    # Compose writes its own com.docker.compose.* labels.
    return {k: v for k, v in values.items() if not labels.is_compose_label(k)}


def compose_dict(plan):
    """Return the compose file of ``plan`` as a dict (Compose Specification)."""
    by_name = {s.name: s for s in plan.services}
    services = {}
    for s in plan.services:
        entry = {"image": s.image} if s.image else {}
        extra = dict(s.extra)
        build = extra.pop("build", None) or s.build
        if build:
            entry["build"] = _compose_build(build)
        if s.command is not None:
            entry["command"] = list(s.command)
        if s.entrypoint is not None:
            entry["entrypoint"] = list(s.entrypoint)
        if s.environment:
            entry["environment"] = dict(s.environment)
        if s.ports:
            entry["ports"] = [
                {
                    "target": p.target,
                    **({} if p.published is None else {"published": str(p.published)}),
                    "host_ip": p.host_ip,
                    "protocol": p.protocol,
                }
                for p in s.ports
            ]
        if s.mounts:
            entry["volumes"] = [_compose_mount(m) for m in s.mounts]
        entry["networks"] = {
            key: {"aliases": list(s.aliases)} for key in s.networks.values()
        }
        if s.healthcheck is not None:
            entry["healthcheck"] = _compose_health(s.healthcheck)
        if s.depends_on:
            entry["depends_on"] = {
                dep: {
                    "condition": "service_healthy"
                    if by_name[dep].healthcheck and not by_name[dep].healthcheck.disable
                    else "service_started"
                }
                for dep in s.depends_on
            }
        if s.external_depends_on:
            entry["x-portal-depends-on"] = [
                f"{st}/{sv}" for st, sv in s.external_depends_on
            ]
        if s.gpu:
            deploy = dict(extra.pop("deploy", None) or {})
            resources = dict(deploy.get("resources") or {})
            reservations = dict(resources.get("reservations") or {})
            count = s.gpu_count if str(s.gpu_count) == "all" else int(s.gpu_count)
            reservations["devices"] = [
                {"driver": GPU_DRIVER, "count": count, "capabilities": ["gpu"]}
            ]
            resources["reservations"] = reservations
            deploy["resources"] = resources
            entry["deploy"] = deploy
        if s.shm_size:
            entry["shm_size"] = s.shm_size
        if s.user:
            entry["user"] = s.user
        if s.restart:
            entry["restart"] = s.restart
        entry["labels"] = _compose_labels(s.labels)
        for key, value in extra.items():
            entry.setdefault(key, value)
        services[s.name] = entry

    networks = {}
    for n in plan.networks:
        if n.external:
            networks[n.key] = {"name": n.docker_name, "external": True}
            continue
        entry = {"driver": n.driver or "bridge"}
        if n.subnet:
            pool = {"subnet": n.subnet}
            if n.gateway:
                pool["gateway"] = n.gateway
            entry["ipam"] = {"config": [pool]}
        if n.internal:
            entry["internal"] = True
        entry["labels"] = _compose_labels(n.labels)
        networks[n.key] = entry

    volumes = {}
    for v in plan.volumes:
        if v.external:
            volumes[v.key] = {"name": v.docker_name, "external": True}
        else:
            volumes[v.key] = {"driver": v.driver or "local", "labels": dict(v.labels)}

    document = {"name": plan.project, "services": services}
    if networks:
        document["networks"] = networks
    if volumes:
        document["volumes"] = volumes
    document["x-portal"] = {
        "environment": plan.environment.name,
        "stack": plan.stack.name,
        "dependencies": list(plan.dependency_stacks),
    }
    return document


def render_compose(plan):
    """Return the compose file of ``plan`` as YAML text."""
    header = (
        f"# Stack {plan.stack.name} of environment {plan.environment.name}, rendered "
        "by Stack Portal.\n"
        f"# Use: docker compose -f <this file> up -d   (project {plan.project})\n"
        "# ${VAR} references are resolved by Compose from the shell or .env; "
        f"start stacks {', '.join(plan.dependency_stacks) or '(none)'} first.\n"
    )
    body = yaml.safe_dump(
        compose_dict(plan), sort_keys=False, default_flow_style=False, width=88
    )
    return header + body


def write_compose_files(environment, stacks, output_dir):
    """Write ``compose.<stack>.yml`` for each of ``stacks``; return the paths.

    Every file is rendered before the first is written, so a stack whose
    plan fails (an unset variable in a port, for instance) leaves nothing
    behind.
    """
    folder = Path(output_dir)
    texts = [
        (
            folder / f"compose.{stack.name}.yml",
            render_compose(stack_plan(environment, stack)),
        )
        for stack in stacks
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in texts:
        path.write_text(text)
    return [path for path, _ in texts]

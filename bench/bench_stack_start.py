#!/usr/bin/env python3
"""Start the core stack through the portal vs a plain docker-py script.

    .venv/bin/python bench/bench_stack_start.py [--runs 3] [--stack core]

Both paths create the same network (planned subnet), named volumes and
containers (same images, environment, ports, mounts, healthchecks) from
nothing and wait until every container is healthy:

- portal, cold: ``start_stack(..., enqueue=False)`` + ``run_inline`` of
  StartStackJob: the Operation row, the lock, log lines, plan, secret
  resolution, preflight checks (images, GPU, ports, dependencies), label
  lookups, config hashes, then the containers level by level;
- plain docker-py: ``networks.create``, ``volumes.create``,
  ``containers.run`` for each service, then polling health;
- portal, warm: the same start again with nothing changed (reconcile finds
  every container up to date and leaves it alone).

Everything runs in a throw-away environment (a copy of demo with a free
subnet pool and port offset) and a temporary SQLite database; every object
carries ``portal.bench=<run id>`` and is removed between runs and at the end.
Needs the stand-in images (``make images``) and a Docker engine.
"""

import argparse
import ipaddress
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUN_ID = uuid.uuid4().hex[:8]
LABEL = "portal.bench"


def setup_django(workdir):
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("CHANNELS_PREFIX", f"bench{RUN_ID}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PORTAL_EXTRA_LABELS = {LABEL: RUN_ID}
    call_command("migrate", verbosity=0)
    from stacks.config import import_configs

    import_configs()


def free_pool(client):
    taken = [
        ipaddress.ip_network(c["Subnet"])
        for net in client.api.networks()
        for c in ((net.get("IPAM") or {}).get("Config") or [])
        if c.get("Subnet")
    ]
    pools = list(ipaddress.ip_network("10.240.0.0/12").subnets(new_prefix=20))
    random.shuffle(pools)
    for pool in pools:
        if not any(pool.overlaps(t) for t in taken):
            return str(pool)
    raise SystemExit("no free /20 for the bench environment")


def free_offset(ports):
    def free(port):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    for _ in range(200):
        offset = random.randrange(41000, 55000)
        if all(free(p + offset) for p in ports):
            return offset
    raise SystemExit("no free port offset for the bench environment")


def bench_environment(client, stack):
    from stacks.config import published_ports
    from stacks.models import Environment, ServiceOverride

    demo = Environment.objects.get(name="demo")
    ports = {
        p.published - demo.port_offset
        for s in stack.services.all()
        for p in published_ports(s, demo)
        if p.published is not None
    }
    env = Environment.objects.create(
        name=f"bench{RUN_ID}",
        subnet_pool=free_pool(client),
        port_offset=free_offset(ports),
        gpu_enabled=False,
        settings=demo.settings,
    )
    for override in demo.service_overrides.all():
        ServiceOverride.objects.create(
            environment=env, service=override.service, values=override.values
        )
    return env


def remove_all(client):
    label = f"{LABEL}={RUN_ID}"
    for c in client.containers.list(all=True, filters={"label": label}):
        c.remove(v=True, force=True)
    for n in client.networks.list(filters={"label": label}):
        n.remove()
    for v in client.volumes.list(filters={"label": label}):
        v.remove(force=True)


def portal_start(env, stack, user):
    from portal.operations import run_inline
    from stacks.operations import start_stack

    started = time.perf_counter()
    operation = run_inline(start_stack(env, stack, user=user, enqueue=False))
    elapsed = time.perf_counter() - started
    if operation.status != "succeeded":
        raise SystemExit(f"portal start {operation.status}: {operation.error}")
    return elapsed, operation


def plain_start(client, env, stack):
    """Create the stack with docker-py alone, as a hand-written script would."""
    import docker

    from stacks.compose import resolve_spec, stack_plan
    from stacks.secrets import environ_for, resolve_all

    # Preparing the parameters is not timed: a script would have them
    # written out.
    plan = stack_plan(env, stack)
    environ = environ_for(env)
    specs = [
        resolve_spec(s, partial(resolve_all, environ=environ)) for s in plan.services
    ]
    network = plan.own_networks[0]

    started = time.perf_counter()
    client.networks.create(
        network.docker_name,
        driver="bridge",
        ipam=docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(subnet=network.subnet, gateway=network.gateway)
            ]
        ),
        labels=network.labels,
    )
    for volume in plan.own_volumes:
        client.volumes.create(volume.docker_name, labels=volume.labels)
    containers = []
    for spec in specs:
        health = spec.healthcheck
        containers.append(
            client.containers.run(
                spec.image,
                name=spec.container_name,
                command=spec.command,
                detach=True,
                environment=spec.environment,
                labels=spec.labels,
                network=network.docker_name,
                ports={
                    f"{p.target}/{p.protocol}": (p.host_ip, p.published)
                    for p in spec.ports
                },
                volumes={
                    m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                    for m in spec.mounts
                    if m.type == "volume"
                },
                healthcheck={
                    "test": list(health.test),
                    "interval": int(health.interval * 1e9),
                    "timeout": int(health.timeout * 1e9),
                    "retries": health.retries,
                    "start_period": int(health.start_period * 1e9),
                }
                if health and health.test
                else None,
                restart_policy={"Name": "unless-stopped"},
            )
        )
    created = time.perf_counter() - started
    pending = list(containers)
    while pending:
        for container in list(pending):
            container.reload()
            if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
                pending.remove(container)
        if pending:
            time.sleep(0.3)
    return time.perf_counter() - started, created


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stack", default="core")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    try:
        setup_django(workdir)
        import docker
        from django.contrib.auth import get_user_model

        from stacks.models import Stack

        stack = Stack.objects.get(name=args.stack)
        user = get_user_model().objects.create_superuser(f"bench{RUN_ID}")
        client = docker.from_env(timeout=120)
        env = bench_environment(client, stack)
        services = stack.services.count()
        print(
            f"Stack {stack.name} ({services} services) in {env.name}: pool "
            f"{env.subnet_pool}, port offset {env.port_offset}, {args.runs} runs"
        )
        results = {"portal, cold": [], "plain docker-py": [], "portal, warm": []}
        created = []
        try:
            for _ in range(args.runs):
                remove_all(client)
                total, made = plain_start(client, env, stack)
                results["plain docker-py"].append(total)
                created.append(made)
                remove_all(client)
                elapsed, operation = portal_start(env, stack, user)
                results["portal, cold"].append(elapsed)
                elapsed, operation = portal_start(env, stack, user)
                actions = set(operation.result["stacks"][stack.name].values())
                assert actions == {"unchanged"}, actions
                results["portal, warm"].append(elapsed)
        finally:
            remove_all(client)

        plain = statistics.median(results["plain docker-py"])
        width = 18
        header = ["path".ljust(width)] + [
            f"run {i + 1}".rjust(7) for i in range(args.runs)
        ]
        header += ["median".rjust(7), "vs plain"]
        print()
        print(" | ".join(header))
        print("-|-".join("-" * len(h) for h in header))
        for name, times in results.items():
            median = statistics.median(times)
            row = [name.ljust(width)] + [f"{t:6.2f}s" for t in times]
            row += [f"{median:6.2f}s", f"{median / plain:7.2f}x"]
            print(" | ".join(row))
        print()
        print(
            f"plain docker-py: containers created after "
            f"{statistics.median(created):.2f}s (median), the rest is waiting "
            "for the healthchecks (interval 2s)."
        )
        overhead = statistics.median(results["portal, cold"]) - plain
        print(f"portal overhead over plain docker-py (cold, median): {overhead:+.2f}s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

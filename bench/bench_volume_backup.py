#!/usr/bin/env python3
"""First vs second backup of an unchanged models volume, through the portal.

    .venv/bin/python bench/bench_volume_backup.py [--size-gib 2] [--file-mib 4]

vLLM's models volume (``vllm_cache``) of a throw-away environment (a copy
of demo with a free subnet pool and port offset, its local tier in a
temporary folder) is filled with random files of a few MiB, then backed up
twice by the portal's volume strategy (``backup_service`` + ``run_inline``:
the Operation, the manifest helper, restic in a helper next to the
volume). Nothing changes in between, so the second backup should find
every file unchanged through the parent snapshot and read none of them:

- bytes added by the second backup: target < 1% of the first's;
- time of the second: target <= 0.3x the first's.

Every object carries ``portal.bench=<run id>`` and is removed at the end.
Needs the stand-in images (``make images``, with stackportal/restic) and a
Docker engine.
"""

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
# One run id: setup_django labels what the portal creates with it.
from bench_stack_start import (  # noqa: E402
    LABEL,
    RUN_ID,
    free_offset,
    free_pool,
    setup_django,
)

# Random files of ``mib`` MiB each, ``count`` of them, under models/.
FILL_SCRIPT = (
    'count="$1"; mib="$2"; mkdir -p /data/models; i=0; '
    'while [ "$i" -lt "$count" ]; do '
    'head -c "$((mib * 1048576))" /dev/urandom > "/data/models/shard-$i.bin"; '
    "i=$((i + 1)); done"
)


def remove_all(client):
    label = f"{LABEL}={RUN_ID}"
    for c in client.containers.list(all=True, filters={"label": label}):
        c.remove(v=True, force=True)
    for n in client.networks.list(filters={"label": label}):
        n.remove()
    for v in client.volumes.list(filters={"label": label}):
        v.remove(force=True)


def bench_environment(client, workdir):
    from backups.models import BackupPolicy
    from stacks.config import published_ports
    from stacks.models import Environment, Service, ServiceOverride

    demo = Environment.objects.get(name="demo")
    ports = {
        p.published - demo.port_offset
        for s in Service.objects.filter(stack__name__in=("core", "inference"))
        for p in published_ports(s, demo)
        if p.published is not None
    }
    env = Environment.objects.create(
        name=f"bench{RUN_ID}",
        subnet_pool=free_pool(client),
        port_offset=free_offset(ports),
        gpu_enabled=False,
        settings={
            **demo.settings,
            "variables": {
                **demo.settings.get("variables", {}),
                "BACKUP_LOCAL_PATH": str(workdir / "repositories"),
                "BACKUP_REPOSITORY_PASSWORD": secrets.token_urlsafe(24),
            },
        },
    )
    for override in demo.service_overrides.all():
        ServiceOverride.objects.create(
            environment=env, service=override.service, values=override.values
        )
    # The local tier only: the copies to colder tiers are not what is measured.
    BackupPolicy.objects.create(environment=env, tiers=["local"])
    return env


def fill(client, volume, count, mib):
    container = client.containers.run(
        "stackportal/busybox:local",
        ["sh", "-c", FILL_SCRIPT, "sh", str(count), str(mib)],
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        labels={LABEL: RUN_ID},
        detach=True,
    )
    try:
        status = container.wait(timeout=1800)
        if status["StatusCode"] != 0:
            raise SystemExit(f"filling the volume failed: {container.logs()[-500:]}")
    finally:
        container.remove(force=True)


def back_up(env, service, user):
    from backups.models import BackupRecord
    from backups.operations import backup_service
    from portal.operations import run_inline

    started = time.perf_counter()
    operation = run_inline(backup_service(env, service, user=user, enqueue=False))
    elapsed = time.perf_counter() - started
    if operation.status != "succeeded":
        raise SystemExit(f"backup {operation.status}: {operation.error}")
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    unchanged = next(
        (line.text for line in operation.lines.all() if "unchanged files" in line.text),
        "",
    )
    return elapsed, record, unchanged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--file-mib", type=int, default=4)
    args = parser.parse_args(argv)
    count = max(1, int(args.size_gib * 1024 / args.file_mib))

    workdir = Path(tempfile.mkdtemp(prefix="bench-volume-"))
    try:
        setup_django(workdir)
        import docker
        from django.contrib.auth import get_user_model

        from portal.operations import run_inline
        from stacks.engine.specs import volume_docker_name
        from stacks.models import Service
        from stacks.operations import start_stack

        client = docker.from_env(timeout=300)
        user = get_user_model().objects.create_superuser(f"bench{RUN_ID}")
        env = bench_environment(client, workdir)
        service = Service.objects.get(name="vllm")
        try:
            started = run_inline(
                start_stack(
                    env,
                    service.stack,
                    service=service,
                    user=user,
                    with_dependencies=True,
                    enqueue=False,
                )
            )
            if started.status != "succeeded":
                raise SystemExit(f"start {started.status}: {started.error}")
            volume = volume_docker_name(env.project_name(service.stack), "vllm_cache")
            t0 = time.perf_counter()
            fill(client, volume, count, args.file_mib)
            print(
                f"Volume {volume}: {count} random files of {args.file_mib} MiB "
                f"({count * args.file_mib / 1024:.2f} GiB), written in "
                f"{time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs"
            )
            first_s, first, _ = back_up(env, service, user)
            second_s, second, unchanged = back_up(env, service, user)
        finally:
            remove_all(client)

        ratio_added = second.bytes_added / first.bytes_added
        ratio_time = second_s / first_s
        print()
        # "processed": the bytes of the files restic accounted for, read or
        # found unchanged through the parent snapshot.
        print("backup  | operation | manifest+restic | processed   | added")
        print("--------|-----------|-----------------|-------------|-----------------")
        for name, seconds, record in (
            ("first ", first_s, first),
            ("second", second_s, second),
        ):
            print(
                f"{name}  | {seconds:8.2f}s | {record.duration_s:14.2f}s | "
                f"{record.bytes_total / 2**20:7.1f} MiB | "
                f"{record.bytes_added:,} B"
            )
        print()
        print(f"second backup: {unchanged}")
        print(
            f"bytes added, second / first: {ratio_added:.4%} (target < 1%): "
            f"{'met' if ratio_added < 0.01 else 'MISSED'}"
        )
        print(
            f"time, second / first: {ratio_time:.3f}x (target <= 0.3x): "
            f"{'met' if ratio_time <= 0.3 else 'MISSED'}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

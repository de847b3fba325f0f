#!/usr/bin/env python3
"""A ~1 GB PostgreSQL backup through the portal vs the shell pipeline.

    .venv/bin/python bench/bench_pg_backup.py [--mib 1024] [--rounds 2]

Both paths read the same database of a running stand-in PostgreSQL into a
fresh restic repository (a folder, format 2) and are timed from start to
snapshot:

- baseline: ``docker exec <container> pg_dump -Fc | restic backup --stdin``
  (two processes joined by a pipe, no Python in the data path);
- portal: the ``backup.service`` operation run as a worker runs it (the
  operation row, the lock, the manifest with exact row counts, pg_dump
  streamed through the engine layer into restic, the record), in this
  process, whose peak resident memory is reset before and read after
  (``/proc/self/clear_refs``, ``VmHWM``).

Rounds alternate the two paths, each into a new repository (created
before the clock starts), so neither gains from the other's
deduplication. ``BENCH_VERBOSE=1`` prints the operation's log with times,
``BENCH_PROFILE=1`` a profile of it. Prints each run and the ratio of the
portal's throughput to the baseline's (target >= 0.95) and how far the
worker's peak memory rose (target < 150 MB). Everything runs in a throw-away
environment (a copy of demo) and SQLite database; containers and volumes
carry ``portal.bench=<run id>`` and are removed at the end.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_stack_start import (  # noqa: E402
    RUN_ID,
    bench_environment,
    remove_all,
    setup_django,
)

PASSWORD = f"bench-{RUN_ID}"


def seed(client, container, mib):
    """Fill the database with ``mib`` MiB of md5 output (barely compressible)."""
    from stacks import engine

    rows = mib * 1024
    sql = (
        "CREATE TABLE blobs (id int PRIMARY KEY, data bytea);"
        "INSERT INTO blobs SELECT i, decode(string_agg(md5(i::text || '-' || "
        f"j::text), ''), 'hex') FROM generate_series(1, {rows}) i, "
        "generate_series(1, 64) j GROUP BY i;"
    )
    result = engine.exec_run(
        client,
        container,
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "multimodal",
            "-d",
            "multimodal",
            "-c",
            sql,
        ],
    )
    if not result.ok:
        raise SystemExit(f"seeding failed: {result.stderr_text()}")


def restic_env(repo):
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "RESTIC_PASSWORD": PASSWORD,
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_CACHE_DIR": str(repo.parent / "cache"),
    }


def baseline(container, repo):
    env = restic_env(repo)
    subprocess.run(
        ["restic", "init", "--repository-version", "2"],
        env=env,
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    dump = subprocess.Popen(
        [
            "docker",
            "exec",
            container,
            "pg_dump",
            "-U",
            "multimodal",
            "-d",
            "multimodal",
            "-Fc",
            "--no-owner",
            "--no-privileges",
        ],
        stdout=subprocess.PIPE,
    )
    backup = subprocess.run(
        [
            "restic",
            "backup",
            "--stdin",
            "--stdin-filename",
            "multimodal.dump",
            "--json",
            "--host",
            "bench",
        ],
        stdin=dump.stdout,
        env=env,
        capture_output=True,
        check=False,
    )
    dump.stdout.close()
    dump.wait()
    elapsed = time.perf_counter() - started
    if dump.returncode or backup.returncode:
        raise SystemExit(f"baseline failed: {backup.stderr.decode()[-500:]}")
    return elapsed


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def portal(env, repo_root, user):
    """Run the backup operation as a worker runs it; return (seconds, growth).

    ``growth`` is how far this process's peak resident memory rose above
    what it held before (the peak is reset first, /proc/self/clear_refs).
    """
    from backups.models import StorageTier
    from backups.operations import backup_service
    from backups.tiers import repository
    from portal.operations import run_inline
    from stacks.models import Service

    env.settings["variables"]["BACKUP_LOCAL_PATH"] = str(repo_root)
    env.save()
    # Created beforehand, as the baseline's is: restic init is not a backup.
    repository(StorageTier.objects.get(name="local"), env).ensure()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status("VmRSS:")
    started = time.perf_counter()
    request = backup_service(
        env, Service.objects.get(name="postgres"), user=user, enqueue=False
    )
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        operation = profiler.runcall(run_inline, request)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    else:
        operation = run_inline(request)
    elapsed = time.perf_counter() - started
    if operation.status != "succeeded":
        raise SystemExit(f"portal backup {operation.status}: {operation.error}")
    if os.environ.get("BENCH_VERBOSE"):
        first = operation.created
        for line in operation.lines.order_by("seq"):
            offset = (line.created - first).total_seconds()
            print(f"    +{offset:6.2f}s {line.text[:100]}")
    return elapsed, _status("VmHWM:") - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="database size")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-backup-"))
    setup_django(workdir)

    import docker
    from django.contrib.auth import get_user_model

    from backups.models import BackupPolicy
    from portal.operations import run_inline
    from stacks import engine
    from stacks.models import Service, Stack
    from stacks.operations import start_stack

    client = docker.from_env(timeout=120)
    user = get_user_model().objects.create_superuser("bench")
    core = Stack.objects.get(name="core")
    env = bench_environment(client, core)
    env.settings = {
        **env.settings,
        "variables": {
            **env.settings.get("variables", {}),
            "BACKUP_REPOSITORY_PASSWORD": PASSWORD,
        },
    }
    env.save()
    BackupPolicy.objects.create(environment=env, tiers=["local"])
    try:
        postgres = Service.objects.get(name="postgres")
        operation = run_inline(
            start_stack(env, core, service=postgres, user=user, enqueue=False)
        )
        if operation.status != "succeeded":
            raise SystemExit(f"start failed: {operation.error}")
        container = engine.service_states(client, env.project_name(core))["postgres"].id
        print(f"seeding {args.mib} MiB ...", flush=True)
        started = time.perf_counter()
        seed(client, container, args.mib)
        print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)

        base_times, portal_times, peaks = [], [], []
        for round_ in range(1, args.rounds + 1):
            base_repo = workdir / f"baseline-{round_}" / "repo"
            base_repo.parent.mkdir()
            base_times.append(baseline(container, base_repo))
            print(f"round {round_}: baseline {base_times[-1]:.2f}s", flush=True)
            elapsed, peak = portal(env, workdir / f"portal-{round_}", user)
            portal_times.append(elapsed)
            peaks.append(peak)
            print(
                f"round {round_}: portal {elapsed:.2f}s, peak memory growth "
                f"{peak / 2**20:.1f} MiB",
                flush=True,
            )
        base, port = statistics.median(base_times), statistics.median(portal_times)
        print()
        print(f"baseline (docker exec pg_dump | restic): median {base:.2f}s")
        print(f"portal (backup.service):                 median {port:.2f}s")
        print(f"throughput ratio portal/baseline: {base / port:.3f} (target >= 0.95)")
        growth = max(peaks) / 2**20
        print(f"portal peak memory growth: {growth:.1f} MiB (target < 150)")
    finally:
        remove_all(client)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A restore drill of a ~1 GB PostgreSQL backup vs the shell pipeline.

    .venv/bin/python bench/bench_drill.py [--mib 1024] [--rounds 2]

One backup of a seeded stand-in PostgreSQL is written into a fresh restic
repository (a folder) through the portal, then each round times, from the
first Docker call to the throw-away container removed:

- baseline: ``docker run`` of a fresh container of the same image, wait
  for its healthcheck, then ``restic dump <snapshot> /multimodal.full.dump
  | docker exec -i <container> pg_restore`` (no Python in the data path;
  nothing is compared afterwards), then ``docker rm -f -v`` (the drill's
  time includes removing its copy too);
- portal: the ``backup.drill`` operation run as a worker runs it: the
  operation row, leftovers looked for, a labelled throw-away copy of the
  service (fresh volume, network of its own) waited for, the dump streamed
  from restic through the engine layer into ``pg_restore
  --single-transaction``, then the exact row count of every table compared
  with the manifest and the proof stored.

Each round runs both paths, in alternating order. Prints each run (with
its steps), the ratio per round and the ratio of the medians of the
portal's time to the baseline's (target <= 1.2); on a shared machine the
per-round ratios show how much the load moved. Everything runs in a
throw-away environment (a copy of demo) and SQLite database; containers,
networks and volumes carry ``portal.bench=<run id>`` and are removed at the
end.
"""

import argparse
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

from bench_pg_backup import PASSWORD, restic_env, seed  # noqa: E402
from bench_stack_start import (  # noqa: E402
    LABEL,
    RUN_ID,
    bench_environment,
    remove_all,
    setup_django,
)


def wait_healthy(client, container, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.api.inspect_container(container)["State"]
        if (state.get("Health") or {}).get("Status") == "healthy":
            return
        if state["Status"] in ("exited", "dead"):
            raise SystemExit(f"the fresh container {container[:12]} exited")
        time.sleep(0.2)
    raise SystemExit(f"the fresh container {container[:12]} never became healthy")


def baseline(client, image, repo, snapshot, round_):
    """Time docker run + wait + restic dump | pg_restore; return (seconds,
    the two steps' seconds)."""
    started = time.perf_counter()
    created = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            f"bench-drill-{RUN_ID}-{round_}",
            "--label",
            f"{LABEL}={RUN_ID}",
            "-e",
            "POSTGRES_USER=multimodal",
            "-e",
            "POSTGRES_DB=multimodal",
            "-e",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            image,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    container = created.stdout.strip()
    wait_healthy(client, container)
    ready = time.perf_counter()
    dump = subprocess.Popen(
        ["restic", "dump", snapshot, "/multimodal.full.dump"],
        env=restic_env(repo),
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            container,
            "pg_restore",
            "-U",
            "multimodal",
            "-d",
            "multimodal",
            "--no-owner",
            "--no-privileges",
        ],
        stdin=dump.stdout,
        capture_output=True,
        check=False,
    )
    dump.stdout.close()
    dump.wait()
    restored = time.perf_counter()
    if dump.returncode or restore.returncode:
        raise SystemExit(f"baseline failed: {restore.stderr.decode()[-500:]}")
    # Thrown away, as the drill's copy is (inside the drill's time).
    subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True)
    elapsed = time.perf_counter() - started
    return elapsed, {
        "start": ready - started,
        "restore": restored - ready,
        "remove": elapsed - (restored - started),
    }


def portal(env, record, user):
    """Run the drill as a worker runs it; return (seconds, its proof)."""
    from backups.models import RestoreDrill
    from backups.operations import drill_backup
    from portal.operations import run_inline

    started = time.perf_counter()
    operation = run_inline(drill_backup(env, record, user=user, enqueue=False))
    elapsed = time.perf_counter() - started
    if operation.status != "succeeded":
        raise SystemExit(f"drill {operation.status}: {operation.error}")
    return elapsed, RestoreDrill.objects.get(operation=operation)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="database size")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-drill-"))
    setup_django(workdir)

    import docker
    from django.contrib.auth import get_user_model

    from backups.models import BackupPolicy, BackupRecord
    from backups.operations import backup_service
    from portal.operations import run_inline
    from stacks import engine
    from stacks.models import Service, Stack
    from stacks.operations import start_stack

    client = docker.from_env(timeout=300)
    user = get_user_model().objects.create_superuser("bench")
    core = Stack.objects.get(name="core")
    env = bench_environment(client, core)
    env.settings = {
        **env.settings,
        "variables": {
            **env.settings.get("variables", {}),
            "BACKUP_REPOSITORY_PASSWORD": PASSWORD,
            "BACKUP_LOCAL_PATH": str(workdir / "repo"),
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
        state = engine.service_states(client, env.project_name(core))["postgres"]
        image = client.api.inspect_container(state.id)["Config"]["Image"]
        print(f"seeding {args.mib} MiB ...", flush=True)
        started = time.perf_counter()
        seed(client, state.id, args.mib)
        print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)
        started = time.perf_counter()
        backup = run_inline(backup_service(env, postgres, user=user, enqueue=False))
        if backup.status != "succeeded":
            raise SystemExit(f"backup failed: {backup.error}")
        record = BackupRecord.objects.get(operation=backup)
        print(
            f"backed up in {time.perf_counter() - started:.1f}s: snapshot "
            f"{record.snapshot_id[:8]}, {record.bytes_total / 2**20:.0f} MiB dump, "
            f"{record.manifest.get('rows')} rows",
            flush=True,
        )
        repo = Path(record.repository)

        base_times, portal_times = [], []

        def run_baseline(round_):
            elapsed, steps = baseline(client, image, repo, record.snapshot_id, round_)
            base_times.append(elapsed)
            print(
                f"round {round_}: baseline {elapsed:.2f}s (start {steps['start']:.1f}s,"
                f" restore {steps['restore']:.1f}s, remove {steps['remove']:.1f}s)",
                flush=True,
            )

        def run_portal(round_):
            elapsed, proof = portal(env, record, user)
            portal_times.append(elapsed)
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in proof.proof["steps"].items())
            print(
                f"round {round_}: portal {elapsed:.2f}s ({steps}; "
                f"{len(proof.proof['compared'])} facts compared, {proof.status})",
                flush=True,
            )

        for round_ in range(1, args.rounds + 1):
            # Alternate which goes first: neither always reads a cold cache.
            order = (run_baseline, run_portal)
            for step in order if round_ % 2 else reversed(order):
                step(round_)
        base, port = statistics.median(base_times), statistics.median(portal_times)
        ratios = [p / b for p, b in zip(portal_times, base_times, strict=True)]
        print()
        print(f"baseline (docker run; restic dump | pg_restore): median {base:.2f}s")
        print(f"portal (backup.drill, with the row counts):     median {port:.2f}s")
        print(
            "time ratio portal/baseline per round: "
            + ", ".join(f"{r:.2f}" for r in ratios)
        )
        print(f"time ratio of the medians: {port / base:.3f} (target <= 1.2)")
    finally:
        remove_all(client)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cleaning up a large PostgreSQL table: rows per second and the longest lock.

    .venv/bin/python bench/bench_retention_rows.py [--rows 5000000] [--batch 5000]

A stand-in PostgreSQL of a throw-away environment gets a table ``logs``
(``id``, ``created_at``, 100 bytes of text) with ``--rows`` rows, half of
them 20 days old (``postgres/tables/logs`` keeps 7). The ``retention.cleanup``
operation of postgres then runs as a worker runs it (measure, then delete
in batches of about ``--batch`` rows, a range of pages per statement, no
backup first), while a probe in another connection updates a young row and
inserts one every 50 ms and records how long each took.

Printed: rows deleted, the delete step's rows per second, the longest batch
(each batch is one statement in its own transaction: the longest time any
row lock of the cleanup was held; the table itself is never locked), the
probe's slowest write (what a client waited at worst), and the whole
operation's time. Containers and volumes carry ``portal.bench=<run id>`` and
are removed at the end.
"""

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_stack_start import (  # noqa: E402
    bench_environment,
    remove_all,
    setup_django,
)

# One statement per psql call; the container's /dev/shm (64 MB) is too
# small for a parallel index build.
SEED = [
    "CREATE TABLE logs (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, "
    "body text)",
    "INSERT INTO logs (created_at, body) "
    "SELECT CASE WHEN i % 2 = 0 THEN now() - interval '20 days' ELSE now() END "
    "- (i % 1000) * interval '1 second', repeat('x', 100) "
    "FROM generate_series(1, {rows}) i",
    "SET max_parallel_maintenance_workers = 0; "
    "CREATE INDEX logs_created_at ON logs (created_at)",
    # Parallel vacuum's dead-tuple store is a shared memory segment too.
    "VACUUM (ANALYZE, PARALLEL 0) logs",
]


def psql(client, container, sql):
    from stacks import engine

    result = engine.exec_run(
        client,
        container,
        ["psql", "-At", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "multimodal",
         "-d", "multimodal", "-c", sql],
    )  # fmt: skip
    if not result.ok:
        raise SystemExit(f"psql failed: {result.stderr_text()}")
    return result.stdout.decode().strip()


class Probe(threading.Thread):
    """Write to the table every 50 ms from its own psql session; keep the
    slowest write."""

    def __init__(self, container):
        super().__init__(daemon=True)
        self.container = container
        self.stop = threading.Event()
        self.slowest = 0.0
        self.writes = 0

    def run(self):
        import subprocess

        session = subprocess.Popen(
            ["docker", "exec", "-i", self.container, "psql", "-At", "-X", "-q",
             "-U", "multimodal", "-d", "multimodal"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )  # fmt: skip
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                session.stdin.write(
                    "UPDATE logs SET body = body WHERE id = 1; "
                    "INSERT INTO logs (created_at, body) VALUES (now(), 'probe'); "
                    "SELECT 'done';\n"
                )
                session.stdin.flush()
                session.stdout.readline()
                elapsed = time.perf_counter() - started
                self.slowest = max(self.slowest, elapsed)
                self.writes += 1
                self.stop.wait(0.05)
        finally:
            session.stdin.close()
            session.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-retention-rows-"))
    setup_django(workdir)

    import docker
    from django.contrib.auth import get_user_model

    from portal.operations import run_inline
    from retention.models import CleanupRecord, EnvironmentRetention, RetentionItem
    from retention.operations import request_cleanup
    from stacks import engine
    from stacks.models import Service, Stack
    from stacks.operations import start_stack

    client = docker.from_env(timeout=600)
    user = get_user_model().objects.create_superuser("bench")
    core = Stack.objects.get(name="core")
    env = bench_environment(client, core)
    EnvironmentRetention.objects.create(environment=env, backup_before_cleanup=False)
    # Only the logs table: the other items of postgres have no table here.
    RetentionItem.objects.filter(policy__service="postgres").exclude(
        name="logs"
    ).delete()
    RetentionItem.objects.filter(policy__service="postgres", name="logs").update(
        settings={"batch_size": args.batch}
    )
    try:
        postgres = Service.objects.get(name="postgres")
        operation = run_inline(
            start_stack(env, core, service=postgres, user=user, enqueue=False)
        )
        if operation.status != "succeeded":
            raise SystemExit(f"start failed: {operation.error}")
        container = engine.service_states(client, env.project_name(core))["postgres"].id
        print(f"seeding {args.rows} rows ...", flush=True)
        started = time.perf_counter()
        for statement in SEED:
            psql(client, container, statement.format(rows=args.rows))
        print(f"seeded in {time.perf_counter() - started:.1f}s", flush=True)
        probe = Probe(container)
        probe.start()
        started = time.perf_counter()
        operation = run_inline(
            request_cleanup(env, user=user, service="postgres", enqueue=False)
        )
        total = time.perf_counter() - started
        probe.stop.set()
        probe.join()
        if operation.status != "succeeded":
            raise SystemExit(f"cleanup {operation.status}: {operation.error}")
        record = CleanupRecord.objects.get(
            operation=operation, item="postgres/tables/logs"
        )
        left = psql(
            client,
            container,
            "SELECT count(*) FILTER (WHERE created_at < now() - interval '7 days'), "
            "count(*) FROM logs",
        )
        print()
        print(f"rows: {args.rows}, deleted {record.removed}, left (old|all) {left}")
        print(
            f"batches: {record.detail['batches']} of {record.detail['pages_per_batch']}"
            f" page(s) (about {args.batch} rows)"
        )
        longest = record.detail["longest_batch_s"]
        print(f"longest batch (longest row lock held): {longest:.3f}s")
        print(f"delete step: {record.detail['delete_s']:.1f}s, "
              f"{record.removed / record.detail['delete_s']:.0f} rows/s")  # fmt: skip
        print(
            f"probe: {probe.writes} writes, slowest {probe.slowest * 1000:.0f} ms "
            "(update of a young row + insert)"
        )
        print(f"whole operation (measure + delete): {total:.1f}s")
    finally:
        remove_all(client)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark of the operation engine: start latency and log throughput.

    python bench/bench_operations.py [--ops 200] [--lines 100000]

Measures, in one run against the local Redis and a throw-away SQLite file:

1. Click-to-run latency of an operation (``request_operation`` call, as a
   button click makes it, to the first line of the runner's ``run()``)
   against a bare RQ job (``enqueue`` call to the first line of the job
   function), both on the same forking PortalWorker, interleaved, one at a
   time, each sent to an idle worker; median and p95, and their ratios.
   Target: the operation's p95 within 1.5x the bare job's p95.
2. Log throughput of one operation writing N lines: lines/s logged by the
   runner, saved to the database (until the operation's final flush), and
   delivered to a WebSocket client (the real consumer through
   ``portal.asgi.application`` and channels_redis, in this process).

Uses Redis database ``BENCH_REDIS_DB`` (default 15), which must be empty.
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _db_file = f"/tmp/portal-bench-{os.getpid()}.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{_db_file}")
    os.environ.setdefault(
        "REDIS_URL", f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '15')}"
    )
    os.environ.setdefault("CHANNELS_PREFIX", "portal-bench")

import django  # noqa: E402

django.setup()

from portal.choices import Verb  # noqa: E402
from portal.operations import OperationRunner, register  # noqa: E402

# The operation's p95 should be within this factor of the bare job's.
P95_TARGET = 1.5

BARE_KEY = "portal:bench:bare"
RUN_KEY = "portal:bench:run"


@register
class NoopBenchJob(OperationRunner):
    """Record when run() starts; the stack lock is taken as for start/stop."""

    kind = "bench.noop"
    verb = Verb.START

    def run(self):
        t_run = time.time()
        _redis().rpush(RUN_KEY, repr(t_run))
        return {"t_run": t_run}


@register
class FloodBenchJob(OperationRunner):
    """Log ``lines`` lines as fast as the runner can."""

    kind = "bench.flood"
    verb = Verb.CHECK
    mutating = False
    job_timeout = 1800

    def run(self):
        parameters = self.operation.parameters
        lines = int(parameters.get("lines", 100000))
        time.sleep(float(parameters.get("delay", 0)))
        info = self.log.info
        t_first = time.time()
        for n in range(1, lines + 1):
            info("line %d of the flood", n)
        return {"t_first": t_first, "t_logged": time.time(), "lines": lines}


def _redis():
    import django_rq

    return django_rq.get_connection("default")


def bare_job():
    """The bare RQ job: report when it started."""
    _redis().rpush(BARE_KEY, repr(time.time()))


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values):
    return percentile(values, 50)


def main(argv):
    import argparse
    import subprocess

    import django_rq
    from django.core.management import call_command

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args(argv)

    redis = django_rq.get_connection("default")
    if redis.dbsize():
        sys.exit(f"Redis database of {os.environ['REDIS_URL']} is not empty; refusing.")
    call_command("migrate", verbosity=0)
    env = {**os.environ}
    worker = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_worker",
            "--kind",
            "default",
            "--name",
            "bench-worker",
            "--import",
            "bench.bench_operations",
            "--verbosity",
            "0",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not redis.exists("rq:worker:bench-worker"):
            if worker.poll() is not None or time.monotonic() > deadline:
                sys.exit("The worker did not start.")
            time.sleep(0.05)
        environment, user = setup_rows()
        latency = measure_latency(environment, user, args.ops, redis)
        throughput = measure_throughput(environment, user, args.lines)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
        redis.flushdb()
    report(latency, throughput, args)


def setup_rows():
    from django.contrib.auth import get_user_model

    from stacks.models import Environment, Stack

    user = get_user_model().objects.create_superuser("bench", "bench@localhost", "pw")
    environment = Environment.objects.create(name="bench")
    Stack.objects.create(name="core")
    return environment, user


def wait_terminal(operation, poll=0.01, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        operation.refresh_from_db(fields=["status", "started", "finished", "result"])
        if operation.is_terminal:
            return operation
        if time.monotonic() > deadline:
            raise RuntimeError(f"{operation.pk} did not finish")
        time.sleep(poll)


def wait_idle(redis, timeout=30):
    """Wait until the worker is back in its dequeue loop.

    Each sample starts from an idle worker, so neither kind pays for the
    tail of the job before it (the horse saving its result and exiting).
    """
    deadline = time.monotonic() + timeout
    while redis.hget("rq:worker:bench-worker", "state") != b"idle":
        if time.monotonic() > deadline:
            raise RuntimeError("The worker did not become idle.")
        time.sleep(0.001)


def measure_latency(environment, user, count, redis):
    import django_rq

    from portal.operations import request_operation
    from stacks.models import Stack

    stack = Stack.objects.get(name="core")
    queue = django_rq.get_queue("default", commit_mode="auto")
    bare, ops, ops_db, enqueue_calls, request_calls = [], [], [], [], []
    for _ in range(5):  # warm-up: imports, connections, first fork
        queue.enqueue("bench.bench_operations.bare_job")
        redis.blpop(BARE_KEY, timeout=30)
        wait_idle(redis)
        wait_terminal(
            request_operation(
                "bench.noop", user=user, environment=environment, stack=stack
            )
        )
        wait_idle(redis)
    redis.delete(RUN_KEY)
    for _ in range(count):
        t0 = time.time()
        queue.enqueue("bench.bench_operations.bare_job")
        enqueue_calls.append(time.time() - t0)
        _key, started = redis.blpop(BARE_KEY, timeout=30)
        bare.append(float(started) - t0)
        wait_idle(redis)

        t0 = time.time()
        operation = request_operation(
            "bench.noop", user=user, environment=environment, stack=stack
        )
        request_calls.append(time.time() - t0)
        # Wait on Redis, not by reading the database, while the clock runs:
        # SQLite readers delay the worker's commits.
        _key, started = redis.blpop(RUN_KEY, timeout=30)
        ops.append(float(started) - t0)
        wait_terminal(operation)
        ops_db.append(operation.started.timestamp() - t0)
        wait_idle(redis)
    return {
        "bare": bare,
        "ops": ops,
        "ops_db": ops_db,
        "enqueue_calls": enqueue_calls,
        "request_calls": request_calls,
    }


def measure_throughput(environment, user, lines):
    import asyncio

    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings
    from django.test import Client

    from portal.asgi import application
    from portal.models import Operation
    from portal.operations import request_operation

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    async def follow():
        operation = await sync_to_async(request_operation)(
            "bench.flood",
            user=user,
            environment=environment,
            parameters={"lines": lines, "delay": 1.0},
        )
        comm = WebsocketCommunicator(
            application,
            f"/ws/operations/{operation.pk}/?after=0",
            headers=[
                (b"origin", b"http://127.0.0.1"),
                (b"host", b"127.0.0.1"),
                (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
            ],
        )
        connected, _ = await comm.connect(timeout=10)
        assert connected
        last, frames, t_last = 0, 0, None
        while True:
            frame = await comm.receive_json_from(timeout=120)
            frames += 1
            if frame["type"] == "lines":
                for line in frame["lines"]:
                    assert line["seq"] == last + 1, (line["seq"], last)
                    last = line["seq"]
                if last == lines:
                    t_last = time.time()
            elif frame["status"] in ("succeeded", "failed", "errored", "canceled"):
                break
        await comm.disconnect()
        return operation.pk, t_last, last, frames

    pk, t_last, received, frames = asyncio.run(follow())
    operation = Operation.objects.get(pk=pk)
    result = operation.result
    stored = operation.lines.count()
    return {
        "lines": lines,
        "stored": stored,
        "received": received,
        "frames": frames,
        "logged_s": result["t_logged"] - result["t_first"],
        "saved_s": operation.finished.timestamp() - result["t_first"],
        "delivered_s": t_last - result["t_first"],
    }


def report(latency, throughput, args):
    import platform
    import sqlite3

    def ms(value):
        return f"{value * 1000:8.1f} ms"

    bare, ops, ops_db = latency["bare"], latency["ops"], latency["ops_db"]
    print()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, one forking PortalWorker"
    )
    print()
    print(f"Click-to-run latency, {args.ops} of each, interleaved, idle worker")
    print(f"  {'':34} {'median':>11} {'p95':>11}")
    print(
        f"  {'bare RQ job (enqueue -> function)':34} {ms(median(bare))} "
        f"{ms(percentile(bare, 95))}"
    )
    print(
        f"  {'operation (request -> run())':34} {ms(median(ops))} "
        f"{ms(percentile(ops, 95))}"
    )
    print(
        f"  {'operation (request -> started)':34} {ms(median(ops_db))} "
        f"{ms(percentile(ops_db, 95))}"
    )
    for label, key in (
        ("of which the enqueue call", "enqueue_calls"),
        ("of which the request_operation call", "request_calls"),
    ):
        values = latency[key]
        print(f"  {label:34} {ms(median(values))} {ms(percentile(values, 95))}")
    p95_ratio = percentile(ops, 95) / percentile(bare, 95)
    print(
        f"  {'ratio operation / bare':34} {median(ops) / median(bare):10.2f}x "
        f"{p95_ratio:10.2f}x"
    )
    print(
        f"  target: operation p95 <= {P95_TARGET}x bare p95: "
        f"{'met' if p95_ratio <= P95_TARGET else 'NOT met'} ({p95_ratio:.2f}x)"
    )
    print()
    t = throughput
    print(
        f"Log throughput, one operation writing {t['lines']:,} lines "
        f"({t['stored']:,} stored, {t['received']:,} received in {t['frames']} frames)"
    )
    for label, key in (
        ("logged by the runner", "logged_s"),
        ("saved to the database", "saved_s"),
        ("delivered to a WebSocket client", "delivered_s"),
    ):
        print(f"  {label:34} {t['lines'] / t[key]:10,.0f} lines/s  ({t[key]:.2f} s)")
    print()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    finally:
        # WAL mode keeps two files next to the database.
        for suffix in ("", "-wal", "-shm"):
            Path(_db_file + suffix).unlink(missing_ok=True)

#!/usr/bin/env python3
"""Deleting expired files in a volume: the portal's cleaner vs ``find
-mtime +N -delete``.

    .venv/bin/python bench/bench_retention_files.py [--files 1000000] [--rounds 2]

Each round fills two fresh volumes the same way (``--files`` expired files,
40 days old, in folders of 1000, plus 1000 young ones that must stay), then
times, in alternating order:

- baseline: a helper container of the base image (Debian, GNU find: BusyBox's
  has no ``-delete``) with the volume mounted running ``find /data -type f
  -mtime +14 -delete``;
- portal: the cleaner's delete step of a ``volumes/multimodal_cache`` item
  (14 days), with the environment's helper image set to the same base image:
  ``find`` with the item's tests, ``-printf`` of each size, ``-delete``,
  summed into the count and bytes freed.

Both include starting and removing their container. Printed: each run, the
medians and the ratio portal/baseline (target <= 1.2), and the time of the
whole cleanup operation's dry run (the two measuring walks a real run also
does before deleting). Everything runs in a throw-away environment and
SQLite database; volumes and containers carry ``portal.bench=<run id>`` and
are removed at the end.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_stack_start import (  # noqa: E402
    LABEL,
    RUN_ID,
    bench_environment,
    remove_all,
    setup_django,
)

IMAGE = "stackportal/base:local"
FILL = r"""
set -e
n="$1"
cd /data
i=0
while [ $(( i * 1000 )) -lt "$n" ]; do
  mkdir -p "old/d$i"
  i=$(( i + 1 ))
done
seq 0 $(( n - 1 )) | awk '{printf "old/d%d/f%d\n", int($1 / 1000), $1}' |
  xargs touch -d "$(date -d @$(( $(date +%s) - 40 * 86400 )) '+%Y-%m-%d %H:%M:%S')"
mkdir -p young
seq 1 1000 | awk '{printf "young/f%d\n", $1}' | xargs touch
find /data -type f | wc -l
"""


def make_volume(client, env, name):
    from stacks import engine

    client.volumes.create(
        name,
        labels={
            LABEL: RUN_ID,
            engine.labels.MANAGED: "true",
            engine.labels.ENVIRONMENT: env.name,
            engine.labels.COMPOSE_VOLUME: "multimodal_cache",
        },
    )


def run_in(client, volume, command):
    output = client.containers.run(
        "stackportal/busybox:local",
        command,
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        labels={LABEL: RUN_ID},
        remove=True,
    )
    return output.decode().strip()


def fill(client, volume, files):
    started = time.perf_counter()
    count = run_in(client, volume, ["sh", "-c", FILL, "fill", str(files)])
    print(f"  filled {volume}: {count} files in {time.perf_counter() - started:.1f}s")
    return int(count)


def baseline(client, env, volume):
    from stacks import engine

    started = time.perf_counter()
    code, output = engine.run_helper(
        client,
        ["find", "/data", "-type", "f", "-mtime", "+14", "-delete"],
        environment=env,
        purpose="bench",
        mounts=[engine.MountSpec(type="volume", target="/data", source=volume)],
        timeout=7200,
    )
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"baseline failed: {output[-500:]}")
    return elapsed


def portal(client, env, item, volume_key):
    from retention.cleaners import Context, remove

    ctx = Context(
        environment=env,
        client=client,
        log=type("Log", (), {"info": staticmethod(lambda text: None)})(),
        check_cancel=lambda: None,
        owner="bench",
    )
    started = time.perf_counter()
    done = remove(ctx, item, None, None)
    return time.perf_counter() - started, done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-retention-files-"))
    setup_django(workdir)

    import docker
    from django.contrib.auth import get_user_model

    from portal.operations import run_inline
    from retention.models import EnvironmentRetention
    from retention.operations import request_cleanup
    from retention.policies import environment_items
    from stacks.models import Stack

    client = docker.from_env(timeout=7200)
    user = get_user_model().objects.create_superuser("bench")
    env = bench_environment(client, Stack.objects.get(name="core"))
    # BusyBox find has no -delete: both sides run in the base image (GNU
    # find), the portal's helpers too.
    env.settings = {**env.settings, "helper_image": IMAGE}
    env.save()
    EnvironmentRetention.objects.create(environment=env, backup_before_cleanup=False)
    (item,) = [
        i
        for i in environment_items(env, service="multimodal-worker")
        if i.key == "volumes/multimodal_cache"
    ]
    try:
        base_times, portal_times, dry_times = [], [], []
        for round_ in range(1, args.rounds + 1):
            # The portal finds the volume by its labels: one at a time.
            order = ["portal", "baseline"] if round_ % 2 else ["baseline", "portal"]
            for which in order:
                volume = f"{env.name}_multimodal_cache"
                make_volume(client, env, volume)
                total = fill(client, volume, args.files)
                if which == "baseline":
                    base_times.append(baseline(client, env, volume))
                    print(f"round {round_}: baseline {base_times[-1]:.2f}s", flush=True)
                else:
                    started = time.perf_counter()
                    dry = run_inline(
                        request_cleanup(
                            env,
                            user=user,
                            service="multimodal-worker",
                            dry_run=True,
                            enqueue=False,
                        )
                    )
                    dry_times.append(time.perf_counter() - started)
                    if dry.status != "succeeded":
                        raise SystemExit(f"dry run {dry.status}: {dry.error}")
                    elapsed, done = portal(client, env, item, "multimodal_cache")
                    portal_times.append(elapsed)
                    print(
                        f"round {round_}: portal {elapsed:.2f}s, removed "
                        f"{done['removed']} ({done['freed_bytes']} bytes); dry run "
                        f"{dry_times[-1]:.2f}s",
                        flush=True,
                    )
                    if done["removed"] != total - 1000:
                        raise SystemExit("the portal did not remove every expired file")
                left = run_in(
                    client, volume, ["sh", "-c", "find /data -type f | wc -l"]
                )
                if int(left) != 1000:
                    raise SystemExit(f"{which} left {left} files, not the 1000 young")
                client.volumes.get(volume).remove(force=True)
        base, port = statistics.median(base_times), statistics.median(portal_times)
        print()
        print(f"files: {args.files} expired + 1000 young, rounds: {args.rounds}")
        print(f"baseline (find -mtime +14 -delete): median {base:.2f}s")
        print(f"portal (the cleaner's delete):      median {port:.2f}s")
        print(f"ratio portal/baseline: {port / base:.3f} (target <= 1.2)")
        print(f"dry run (the measure a real run does first): median "
              f"{statistics.median(dry_times):.2f}s")  # fmt: skip
    finally:
        remove_all(client)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

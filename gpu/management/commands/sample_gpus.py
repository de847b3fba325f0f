"""Sample the GPUs of every environment's Docker host, publish, keep history.

    manage.py sample_gpus [--env E ...] [--interval SECONDS] [--once]

Without ``--once`` the command supervises one sampler process (restarted
after 1 s, doubling up to 30 s, when it dies) that reads each Docker host
every ``--interval`` seconds (``PORTAL_GPU["INTERVAL"]``, 5) in a thread of
its own, so a slow host never delays another, stores each environment's
sample in Redis and publishes it to ``gpu.<env>``. A host where no source
finds a GPU is tried again every ``UNAVAILABLE_INTERVAL`` seconds (60) and
its environments' samples say why. The environment list is read again
every 30 s. ``--once`` samples each host once, prints what it found and
exits.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import close_old_connections

from portal.management.base import PortalCommand
from portal.supervisor import supervise
from stacks.models import Environment

from ...config import get_config
from ...history import save_and_publish
from ...sampling import HostSampler, host_key, sample_once
from ...summary import holders, summary_line

logger = logging.getLogger(__name__)

# Seconds between two readings of the environment list.
RELIST_INTERVAL = 30.0


class HostLoop(threading.Thread):
    """Sample one Docker host (and its environments) until stopped."""

    def __init__(self, key, environments, interval, unavailable_interval, echo):
        super().__init__(name=f"gpu-sampler-{key[0]}", daemon=True)
        self.key = key
        self.environments = environments
        self.interval = interval
        self.unavailable_interval = unavailable_interval
        self.echo = echo
        self.stopping = threading.Event()
        # What was last reported per environment.
        self.reported = {}

    def run(self):
        sampler = HostSampler(self.environments[0])
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    for sample in sampler.sample(list(self.environments)):
                        save_and_publish(sample)
                        self.report(sample)
                except Exception:  # noqa: BLE001  (keep sampling; say so)
                    logger.exception("GPU sample of %s failed", self.key[0])
                wait = self.interval if sampler.available else self.unavailable_interval
                self.stopping.wait(max(0.0, wait - (time.monotonic() - started)))
        finally:
            sampler.close()

    def report(self, sample):
        """Print a line when an environment's GPUs appear, vanish or change."""
        state = (sample.error, len(sample.gpus), sample.source)
        if self.reported.get(sample.environment) != state:
            self.reported[sample.environment] = state
            self.echo(f"{sample.environment}: {summary_line(sample)}")


class Command(PortalCommand):
    help = "Sample the GPUs of the environments' Docker hosts into gpu.<env>."

    def add_arguments(self, parser):
        parser.add_argument(
            "--env",
            action="append",
            default=[],
            help="Only this environment (name or alias); repeat for more.",
        )
        parser.add_argument(
            "--interval", type=float, help="Seconds between samples (default 5)."
        )
        parser.add_argument(
            "--once", action="store_true", help="Sample once, print, exit."
        )
        parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        names = [self.lookup(name) for name in options["env"]]
        if options["once"]:
            return self.once(names)
        if not options["child"]:
            return self.supervise(options)
        interval = options["interval"] or float(get_config()["INTERVAL"])
        if interval <= 0:
            raise CommandError("--interval must be more than 0 seconds.")
        self.loop(names, interval)

    def lookup(self, name):
        try:
            return Environment.lookup(name).name
        except Environment.DoesNotExist:
            raise CommandError(f"No environment {name!r}.")

    def environments(self, names):
        rows = Environment.objects.all()
        if names:
            rows = rows.filter(name__in=names)
        return list(rows)

    def echo(self, line):
        self.stdout.write(line)
        self.stdout.flush()

    def once(self, names):
        environments = self.environments(names)
        if not environments:
            raise CommandError("No environment to sample (run import_configs).")
        for sample in sample_once(environments):
            save_and_publish(sample)
            self.echo(f"{sample.environment}: {summary_line(sample)}")
            for row in sample_holders(sample):
                self.echo(f"  {row}")

    def supervise(self, options):
        argv = [sys.executable, "-m", "django", "sample_gpus", "--child"]
        for name in options["env"]:
            argv += ["--env", name]
        if options["interval"]:
            argv += ["--interval", str(options["interval"])]
        argv += ["--verbosity", str(options["verbosity"])]
        env = {"DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE}
        codes = supervise(
            {"The GPU sampler": argv},
            env={**os.environ, **env},
            cwd=settings.BASE_DIR,
            log=self.stderr.write,
        )
        if any(codes.values()) and not all(
            code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes.values()
        ):
            raise CommandError(f"The GPU sampler exited with {codes}.")

    def loop(self, names, interval):
        config = get_config()
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        loops = {}
        self.echo(f"GPU sampler: every {interval:g} s")
        while not stopping.is_set():
            close_old_connections()
            groups = {}
            for environment in self.environments(names):
                groups.setdefault(host_key(environment), []).append(environment)
            close_old_connections()
            for key in list(loops):
                if key not in groups or not loops[key].is_alive():
                    loops.pop(key).stopping.set()
            for key, environments in groups.items():
                if key in loops:
                    loops[key].environments = environments
                    continue
                loops[key] = HostLoop(
                    key,
                    environments,
                    interval,
                    float(config["UNAVAILABLE_INTERVAL"]),
                    self.echo,
                )
                loops[key].start()
            stopping.wait(RELIST_INTERVAL)
        for host_loop in loops.values():
            host_loop.stopping.set()
        for host_loop in loops.values():
            host_loop.join(timeout=10)


def sample_holders(sample):
    """Return the "who holds the memory" lines of a sample."""
    return [
        f"{row['text']:>10}  {row['label']} (GPU {', '.join(map(str, row['gpus']))})"
        for row in holders(sample)
    ]

"""Run RQ workers for the operations of some environments.

    manage.py run_worker [--env E ...] [--kind default|long] [--burst]
        [--name NAME] [--import MODULE ...] [--reap-interval SECONDS]

Without ``--env`` the worker serves the local Docker engine's queues
(``default``, ``long``); with it, the queues of those environments' hosts
(``host-<slug>-default``, ...), so a worker can run next to its host.

Without ``--kind`` two worker processes are started, one for short
operations and one for long ones, so a backup never delays a restart; the
command waits for both and stops both on SIGTERM/SIGINT. ``--kind`` runs a
single worker in this process.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections
from rq.logutils import setup_loghandlers

from portal.choices import OperationStatus
from portal.management.base import PortalCommand
from portal.models import Operation, environment_model
from portal.operations import abandon_operation, load_modules, pid_alive
from portal.queues import QUEUE_KINDS, get_queue, worker_queue_names
from portal.worker import PortalWorker


class Command(PortalCommand):
    help = "Run the RQ worker(s) serving the operations of some environments."

    def add_arguments(self, parser):
        parser.add_argument(
            "--env",
            action="append",
            default=[],
            help="Serve this environment's Docker host; repeat for more.",
        )
        parser.add_argument(
            "--kind",
            choices=QUEUE_KINDS,
            help="Only this kind of queue, in this process.",
        )
        parser.add_argument("--burst", action="store_true", help="Quit when idle.")
        parser.add_argument("--name", help="Worker name (default: host.pid.kind).")
        parser.add_argument(
            "--import",
            dest="imports",
            action="append",
            default=[],
            metavar="MODULE",
            help="Import MODULE first (runners outside <app>.jobs).",
        )
        parser.add_argument(
            "--reap-interval",
            type=float,
            help="Seconds between reaper runs (default: REAP_INTERVAL).",
        )
        parser.add_argument("--max-jobs", type=int, help="Quit after this many jobs.")
        parser.add_argument(
            "--worker-ttl", type=int, default=420, help="RQ worker TTL in seconds."
        )

    def handle(self, *args, **options):
        Environment = environment_model()
        environments = []
        for name in options["env"]:
            try:
                environments.append(Environment.lookup(name))
            except Environment.DoesNotExist:
                raise CommandError(f"No environment {name!r}.")
        if options["kind"] is None:
            return self.supervise(options)
        load_modules(options["imports"])
        names = worker_queue_names(environments, kinds=[options["kind"]])
        self.work(names, options)

    def work(self, names, options):

        level = {0: "WARNING", 1: "INFO"}.get(options["verbosity"], "DEBUG")
        setup_loghandlers(level)
        queues = [get_queue(name) for name in names]
        worker = PortalWorker(
            queues,
            connection=queues[0].connection,
            name=options["name"]
            or f"{socket.gethostname()}.{os.getpid()}.{options['kind']}",
            worker_ttl=options["worker_ttl"],
            reap_interval=options["reap_interval"],
            job_class=queues[0].job_class,
            queue_class=type(queues[0]),
        )
        self.forget_dead_namesake(worker)
        self.stdout.write(f"Worker {worker.name} on {', '.join(names)}")
        self.stdout.flush()
        connections.close_all()
        worker.work(
            burst=options["burst"], logging_level=level, max_jobs=options["max_jobs"]
        )

    def forget_dead_namesake(self, worker):
        """Clear the registration of a dead worker of the same name on this host.

        RQ refuses a name that is still registered; a worker restarted with a
        fixed ``--name`` after a crash would wait for the old key to expire.
        Its operations are failed as abandoned first.
        """
        old = PortalWorker.find_by_key(worker.key, connection=worker.connection)
        if (
            old is None
            or old.hostname != socket.gethostname()
            or not old.pid
            or pid_alive(old.pid)
        ):
            return
        for operation in Operation.objects.filter(
            status=OperationStatus.RUNNING, worker_name=worker.name
        ):
            abandon_operation(
                operation,
                f"worker {worker.name} (pid {old.pid}) died and was restarted",
            )
        old.register_death()
        connections.close_all()

    def supervise(self, options):
        """Run one worker process per queue kind; restart one that dies.

        Each kind keeps running while the other restarts, so a long backup
        on the long worker never holds up the short queue.
        """
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE}

        def spawn(kind):
            child = subprocess.Popen(
                self.child_argv(kind, options), env=env, cwd=settings.BASE_DIR
            )
            child.started_at = time.monotonic()
            return child

        children = {kind: spawn(kind) for kind in QUEUE_KINDS}
        delays = dict.fromkeys(QUEUE_KINDS, 1.0)
        stopping = []

        def forward(signum, frame):
            stopping.append(signum)
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        while any(child.poll() is None for child in children.values()) or (
            not stopping and not options["burst"]
        ):
            if not stopping and not options["burst"]:
                for kind, child in list(children.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    if time.monotonic() - child.started_at > 60:
                        delays[kind] = 1.0
                    self.stderr.write(
                        f"The {kind} worker exited with {code}; restarting it in "
                        f"{delays[kind]:.0f} s."
                    )
                    time.sleep(delays[kind])
                    delays[kind] = min(30.0, delays[kind] * 2)
                    if not stopping:
                        children[kind] = spawn(kind)
            time.sleep(0.5)
        codes = [child.wait() for child in children.values()]
        if any(codes) and not stopping:
            raise CommandError(f"Worker exit codes: {codes}")

    def child_argv(self, kind, options):
        argv = [sys.executable, "-m", "django", "run_worker", "--kind", kind]
        for name in options["env"]:
            argv += ["--env", name]
        for module in options["imports"]:
            argv += ["--import", module]
        if options["burst"]:
            argv.append("--burst")
        if options["name"]:
            argv += ["--name", f"{options['name']}.{kind}"]
        if options["reap_interval"]:
            argv += ["--reap-interval", str(options["reap_interval"])]
        if options["max_jobs"]:
            argv += ["--max-jobs", str(options["max_jobs"])]
        argv += ["--worker-ttl", str(options["worker_ttl"])]
        argv += ["--verbosity", str(options["verbosity"])]
        return argv

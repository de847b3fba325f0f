"""Start, stop, restart a stack, or show its status or logs.

    manage.py stack start|stop|restart <stack> --env E [--service S]
        [--with-dependencies] [--remove] [--with-dependents]
        [--health-timeout SECONDS] [--user U] [--enqueue [--wait]] [--no-queue]
    manage.py stack status <stack> --env E [--user U]
    manage.py stack logs <stack> --env E [--service S] [--tail N] [--follow]
    manage.py stack stats <stack> --env E [--service S] [--user U]
    manage.py stack diff <stack> --env E [--user U]

``stats`` prints one resource usage sample per container; ``diff`` what a
start would change (as the stack's Diff page), exiting 1 when a start would
change anything, like diff(1).

The make targets ``start-<stack>``, ``stop-<stack>``, ``restart-<stack>``,
``status-<stack>``, ``logs-<stack>``, ``stats-<stack>`` and ``diff-<stack>``
call this with ``ENVIRONMENT``.
"""

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError

from portal.choices import Verb
from portal.management.base import OperationCommand
from portal.permissions import require
from stacks import engine
from stacks.diff import stack_diff
from stacks.models import Service, Stack
from stacks.operations import stack_parameters
from stacks.secrets import MissingSecret
from stacks.status import environment_status

KINDS = {"start": "stack.start", "stop": "stack.stop", "restart": "stack.restart"}


class Command(OperationCommand):
    help = "Start, stop or restart a stack, or show its status or logs."

    def add_arguments(self, parser):
        parser.add_argument(
            "action", choices=[*KINDS, "status", "logs", "stats", "diff"]
        )
        parser.add_argument("stack", help="Stack name: core, inference, ai, ...")
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        parser.add_argument("--service", help="Only this service of the stack.")
        parser.add_argument(
            "--with-dependencies",
            action="store_true",
            help="start: start the stacks this one depends on first.",
        )
        parser.add_argument(
            "--with-dependents",
            action="store_true",
            help="stop: stop the stacks that depend on this one first.",
        )
        parser.add_argument(
            "--remove",
            action="store_true",
            help="stop: remove the containers and networks too (volumes stay).",
        )
        parser.add_argument(
            "--health-timeout",
            type=float,
            help="start/restart: seconds to wait for each level to be healthy.",
        )
        parser.add_argument(
            "--tail", type=int, default=100, help="logs: lines per container."
        )
        parser.add_argument(
            "-f", "--follow", action="store_true", help="logs: keep following."
        )
        self.add_user_argument(parser)
        self.add_run_arguments(parser)

    def handle(self, *args, action, **options):
        environment = self.get_environment(options["env"])
        try:
            stack = Stack.objects.get(name=options["stack"])
        except Stack.DoesNotExist:
            names = ", ".join(Stack.objects.values_list("name", flat=True))
            raise CommandError(f"No stack {options['stack']!r} (stacks: {names}).")
        service = None
        if options["service"]:
            try:
                service = Service.objects.get(name=options["service"], stack=stack)
            except Service.DoesNotExist:
                raise CommandError(
                    f"No service {options['service']!r} in stack {stack.name}."
                )
        if action in KINDS:
            self.run_kind(
                KINDS[action],
                options,
                environment=environment,
                stack=stack,
                service=service,
                parameters=stack_parameters(
                    action,
                    with_dependencies=options["with_dependencies"],
                    with_dependents=options["with_dependents"],
                    remove=options["remove"],
                    health_timeout=options["health_timeout"],
                ),
            )
            return
        try:
            require(self.get_user(options), Verb.VIEW, environment)
        except PermissionDenied as exc:
            raise self.refused(exc, options)
        if action == "status":
            self.status(environment, stack)
        elif action == "stats":
            self.stats(environment, stack, service)
        elif action == "diff":
            self.diff(environment, stack)
        else:
            self.logs(environment, stack, service, options)

    def client(self, environment):
        """Return the environment's Docker client, or raise CommandError."""
        try:
            return engine.client_for(environment)
        except engine.EngineError as exc:
            # The message names the environment and its Docker host.
            raise CommandError(str(exc))

    def status(self, environment, stack):
        stacks = list(Stack.objects.filter(pk=stack.pk).prefetch_related("services"))
        client = self.client(environment)
        status = environment_status(environment, client=client, stacks=stacks)
        if status["error"]:
            raise CommandError(
                f"Docker host {environment.docker_host} of environment "
                f"{environment.name}: {status['error']}"
            )
        row = status["stacks"][0]
        self.stdout.write(
            f"Stack {row['name']} in {environment.name} (project {row['project']}): "
            f"{row['state']}"
            + (f", {row['health']}" if row["health"] else "")
            + f", {row['running']}/{row['total']} running"
        )
        table = [("SERVICE", "STATE", "HEALTH", "CONTAINER", "PORTS", "STATUS")]
        for svc in row["services"]:
            table.append(
                (
                    svc["name"],
                    svc["state"],
                    svc["health"] or "-",
                    svc["container_name"] or "-",
                    ", ".join(svc["ports"]) or "-",
                    svc["status"] or "-",
                )
            )
        self.table(table)

    def table(self, rows):
        """Write ``rows`` (tuples of text) as aligned columns."""
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
            self.stdout.write("  ".join([*cells, r[-1]]).rstrip())

    def stats(self, environment, stack, service):
        client = self.client(environment)
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                found = engine.list_containers(
                    client,
                    environment=environment.name,
                    stack=stack.name,
                    service=service.name if service else None,
                )
                samples = engine.sample_stats(
                    client, [c["Id"] for c in found if c.get("State") == "running"]
                )
        except engine.EngineError as exc:
            raise CommandError(str(exc))
        if not found:
            raise CommandError(
                f"No containers of stack {stack.name} in {environment.name}"
                + (f" for service {service.name}" if service else "")
                + ": start it first."
            )
        mib = 1024 * 1024
        rows = [("SERVICE", "STATE", "CPU %", "MEMORY", "NET RX/TX", "BLOCK R/W")]
        for summary in sorted(
            found, key=lambda c: engine.labels.service_of(c["Labels"])
        ):
            sample = samples.get(summary["Id"]) or {}
            name = engine.labels.service_of(summary.get("Labels") or {})
            if "error" in sample:
                rows.append((name, summary["State"], "-", "-", "-", sample["error"]))
            elif not sample:
                rows.append((name, summary["State"], "-", "-", "-", "-"))
            else:
                rows.append(
                    (
                        name,
                        summary["State"],
                        f"{sample['cpu_percent']:.1f}",
                        f"{sample['memory_bytes'] / mib:.1f} MiB "
                        f"({sample['memory_percent']:.1f} %)",
                        f"{sample['net_rx_bytes'] / mib:.2f}/"
                        f"{sample['net_tx_bytes'] / mib:.2f} MiB",
                        f"{sample['block_read_bytes'] / mib:.2f}/"
                        f"{sample['block_write_bytes'] / mib:.2f} MiB",
                    )
                )
        self.table(rows)

    def diff(self, environment, stack):
        try:
            result = stack_diff(environment, stack, client=self.client(environment))
        except (engine.EngineError, MissingSecret, ValueError) as exc:
            raise CommandError(
                f"Cannot compare stack {stack.name} in {environment.name}: {exc}"
            )
        if result["problem"]:
            self.stderr.write(
                f"The configuration cannot be resolved here: {result['problem']}"
            )
        rows = [("SERVICE", "A START WOULD", "WHY")]
        rows += [(s["service"], s["verdict"], s["why"]) for s in result["services"]]
        self.table(rows)
        for entry in result["services"]:
            if entry["diff"] and entry["verdict"] not in ("unchanged", "start"):
                self.stdout.write("")
                for line in entry["diff"]:
                    self.stdout.write(line)
        if result["others"]:
            self.stdout.write(
                f"\nContainers no configured service names (left alone): "
                f"{', '.join(result['others'])}"
            )
        changing = [s for s in result["services"] if s["verdict"] != "unchanged"]
        if changing:
            raise CommandError(
                f"{len(changing)} of {len(result['services'])} services of "
                f"{stack.name} would change on a start.",
                returncode=1,
            )

    def logs(self, environment, stack, service, options):
        client = self.client(environment)
        project = environment.project_name(stack)
        services = [service.name] if service else None
        names = services or list(stack.services.values_list("name", flat=True))
        width = max((len(n) for n in names), default=0)
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                for name, line in engine.stream_logs(
                    client,
                    project,
                    services=services,
                    tail=options["tail"],
                    follow=options["follow"],
                ):
                    self.stdout.write(f"{name.ljust(width)} | {line}")
                    self.stdout.flush()
        except KeyboardInterrupt:
            pass
        except engine.EngineError as exc:
            raise CommandError(str(exc))

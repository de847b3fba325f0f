"""Write the compose files of an environment's stacks.

    manage.py render_compose --env E [--stack S] [--output DIR]

One ``compose.<stack>.yml`` per stack (default folder:
``rendered/<environment>/``). ``${VAR}`` references stay as they are; the
Compose CLI resolves them from the shell or an ``.env`` file.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from portal.management.base import PortalCommand
from stacks.compose import write_compose_files
from stacks.models import Environment, Stack
from stacks.schema.loader import ConfigError
from stacks.secrets import MissingSecret


class Command(PortalCommand):
    help = "Write one compose file per stack of an environment."

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        parser.add_argument("--stack", help="Only this stack.")
        parser.add_argument(
            "--output", help="Folder to write to (default: rendered/<environment>)."
        )

    def handle(self, *args, env, stack, output, **options):
        try:
            environment = Environment.lookup(env)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment {env!r}.")
        stacks = Stack.objects.all()
        if stack:
            stacks = stacks.filter(name=stack)
            if not stacks:
                raise CommandError(f"No stack {stack!r}.")
        folder = (
            Path(output)
            if output
            else (Path(settings.BASE_DIR) / "rendered" / environment.name)
        )
        try:
            paths = write_compose_files(environment, list(stacks), folder)
        except (MissingSecret, ConfigError, ValueError) as exc:
            # A MissingSecret names the variable and the service.
            raise CommandError(
                f"Cannot render the compose files of {environment.name}: {exc}"
            )
        for path in paths:
            self.stdout.write(str(path))

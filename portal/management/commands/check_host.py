"""Check an environment's Docker host (the host.check operation).

manage.py check_host --env E [--user U] [--enqueue [--wait]]
"""

from portal.management.base import OperationCommand


class Command(OperationCommand):
    help = "Check the Docker host of an environment: engine, disk, GPU runtime."

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        self.add_user_argument(parser)
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        environment = self.get_environment(options["env"])
        self.run_kind("host.check", options, environment=environment)

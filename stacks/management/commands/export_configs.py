"""Write the configuration models out as stacks.yaml."""

from portal.management.base import PortalCommand
from stacks.config import export_configs


class Command(PortalCommand):
    help = (
        "Write the stacks, services, networks, volumes and environments in the "
        "database as YAML in the shape of configs/stacks.yaml, which "
        "import_configs reads back."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            "-o",
            help="file to write (default: standard output)",
        )

    def handle(self, *args, output=None, **options):
        text = export_configs(output)
        if output:
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

"""Write the configuration models out as stacks.yaml (and its companions)."""

from pathlib import Path

from portal.management.base import PortalCommand
from stacks.config import dump_yaml, export_configs
from stacks.config.companions import companions


class Command(PortalCommand):
    help = (
        "Write the stacks, services, networks, volumes and environments in the "
        "database as YAML in the shape of configs/stacks.yaml, which "
        "import_configs reads back."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group()
        target.add_argument(
            "--output",
            "-o",
            help="file to write stacks.yaml to (default: standard output)",
        )
        target.add_argument(
            "--dir",
            help="folder to write stacks.yaml and its companion files "
            "(backup-strategies.yaml, ...) to, as import_configs reads them",
        )

    def handle(self, *args, output=None, dir=None, **options):
        if dir:
            folder = Path(dir)
            folder.mkdir(parents=True, exist_ok=True)
            export_configs(folder / "stacks.yaml")
            self.stderr.write(f"wrote {folder / 'stacks.yaml'}")
            for companion in companions():
                if companion.exporter is None:
                    continue
                path = folder / companion.filename
                path.write_text(dump_yaml(companion.exporter()))
                self.stderr.write(f"wrote {path}")
            return
        text = export_configs(output)
        if output:
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

"""Remove orphaned networks: the portal's, unused, in no plan.

    manage.py cleanup_networks [--env E] [--dry-run] [--user U]
        [--enqueue [--wait]] [--no-queue]

Lists, then removes, the networks that carry the portal's labels for the
environment, that no container uses (running, stopped or created) and that
no environment's plan names. ``--dry-run`` lists them and removes nothing.
A network without the portal's labels is never touched. Without ``--env``
every environment is cleaned, and the first environment of each Docker
host also takes the portal's networks labelled with environments the
database no longer has. ``make cleanup-networks [DRY_RUN=1]``.
"""

from stacks.management.network_command import NetworkCommand


class Command(NetworkCommand):
    help = (
        "Remove the portal's orphaned networks of an environment (or all): "
        "unused and in no plan. --dry-run lists them only."
    )
    kind = "network.cleanup"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the orphaned networks; remove nothing.",
        )

    def parameters(self, options, environment, first_on_host):
        return {
            "dry_run": bool(options["dry_run"]),
            "include_unknown": not options.get("env") and first_on_host,
        }

"""Check planned subnets against each other and the Docker host.

    manage.py check_network_conflicts [--env E] [--strict] [--user U]
        [--enqueue [--wait]] [--no-queue]

Compares each environment's planned subnets with the other environments'
plans on its Docker host, the host's Docker networks (the portal's own
network of the same name and subnet excepted), the daemon's default
address pools and the host's routes and interface addresses. Every
conflict names both sides and a free subnet. Exits non-zero on a conflict
(with ``--strict`` also on a warning). ``make check-network-conflicts``.
"""

from stacks.management.network_command import NetworkCommand


class Command(NetworkCommand):
    help = (
        "Check the planned subnets of an environment (or all) against each "
        "other and the Docker host: networks, default pools, routes."
    )
    kind = "network.check"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Also fail on warnings (a planned subnet inside one of the "
            "daemon's default address pools).",
        )

    def parameters(self, options, environment, first_on_host):
        return {"strict": True} if options["strict"] else {}

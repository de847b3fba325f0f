"""Probe each running stack's services from inside its network.

    manage.py check_network_health [--env E] [--user U] [--enqueue [--wait]]
        [--no-queue]

pg_isready, Redis PING, the Qdrant and MinIO health endpoints and the HTTP
health of the other services, by service name from a helper on the stack's
network, each timed and kept as history (the environment page shows it).
Exits non-zero when a probe fails. ``make check-network-health``.
"""

from stacks.management.network_command import NetworkCommand


class Command(NetworkCommand):
    help = (
        "Probe the services of an environment's (or every) running stacks from "
        "inside their networks; keep the timings."
    )
    kind = "network.health"

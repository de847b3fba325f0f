"""Validate networks, attachments and name resolution against the plan.

    manage.py validate_networks [--env E] [--user U] [--enqueue [--wait]]
        [--no-queue]

Each planned network of a running stack exists with its subnet, gateway,
driver and labels; each container is on exactly its planned networks; the
names a service uses for its dependencies resolve from inside it, across
stacks. Exits non-zero when a check fails. ``make validate-networks``.
"""

from stacks.management.network_command import NetworkCommand


class Command(NetworkCommand):
    help = (
        "Validate an environment's (or every) networks, container attachments "
        "and name resolution across stacks."
    )
    kind = "network.validate"

"""The network health schedule of the environments, for ``manage.py crontab``.

Every environment gets ``check_network_health --env <name>`` on
``PORTAL_STACKS["NETWORK_HEALTH_SCHEDULE"]`` (every 15 minutes by default;
empty: none), so the health history on the environment page fills even
when nobody presses *Check health*. Registered in
:class:`stacks.apps.StacksConfig`.
"""

from portal.choices import Verb
from portal.schedules import ScheduledCommand

from .models import Environment
from .operations import get_config

__all__ = ["scheduled_network_health"]


def scheduled_network_health():
    """Return each environment's scheduled network health probes."""
    schedule = str(get_config()["NETWORK_HEALTH_SCHEDULE"] or "").strip()
    if not schedule:
        return []
    return [
        ScheduledCommand(
            name=f"network-health-{name}",
            schedule=schedule,
            args=("check_network_health", "--env", name),
            environment=name,
            verb=Verb.CHECK,
            description="probe the running stacks' services from inside "
            "their networks, keeping the timings",
        )
        for name in Environment.objects.order_by("name").values_list("name", flat=True)
    ]

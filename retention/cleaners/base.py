"""What every cleaner shares: its context, its errors, its defaults."""

from dataclasses import dataclass
from datetime import UTC, datetime

from stacks import engine
from stacks.models import Service

DEFAULT_BATCH = 5000
KEY_SCAN_COUNT = 1000
DATA = "/data"


class CleanupError(Exception):
    """A cleaner could not measure or delete; the message says why."""


class NotThere(CleanupError):
    """The item's data is not there to clean: its service is not running,
    its volume does not exist yet. The item is skipped, not failed."""


@dataclass
class Context:
    """What a cleaner needs: the environment, its engine, the operation's log."""

    environment: object
    client: object
    log: object
    check_cancel: object
    owner: str = ""

    def container(self, service_name):
        """Return the id of ``service_name``'s running container."""
        service = Service.objects.select_related("stack").filter(name=service_name)
        service = service.first()
        if service is None:
            raise CleanupError(f"No service {service_name} in stacks.yaml.")
        states = engine.service_states(
            self.client, self.environment.project_name(service.stack)
        )
        state = states.get(service_name)
        if state is None or state.state != "running":
            raise NotThere(
                f"{service_name} has no running container in "
                f"{self.environment.name}; start it to clean it up."
            )
        return state.id

    def volume(self, key):
        """Return the Docker name of the environment's volume ``key``."""
        for volume in engine.list_volumes(
            self.client, environment=self.environment.name
        ):
            labels = volume.get("Labels") or {}
            if labels.get(engine.labels.COMPOSE_VOLUME) == key:
                return volume["Name"]
        raise NotThere(
            f"Volume {key} does not exist in {self.environment.name} (start the "
            "service that mounts it first)."
        )


def _stamp(seconds):
    if seconds in (None, "", -1):
        return None
    return datetime.fromtimestamp(float(seconds), tz=UTC).isoformat()

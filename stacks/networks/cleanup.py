"""Orphaned networks: the portal's networks that nothing plans or uses.

A network is an orphan, and may be removed, only when all of these hold:

1. it carries the portal's labels: ``portal.managed=true``, a
   ``portal.environment`` (the environment cleaned, or with
   ``include_unknown`` one no environment of the database has) and every
   label of ``settings.PORTAL_EXTRA_LABELS``;
2. no container uses it: running, stopped or only created, the portal's
   (service, helper, job containers) or anyone's;
3. no environment's plan names it (any environment, whatever its host).

A network without the portal's labels is never a candidate, whatever its
name. The dry run lists the orphans and removes nothing; a real run lists
them the same way first, then asks Docker again, per network, whether a
container uses it just before removing it.
"""

from dataclasses import dataclass, field

from .. import engine
from ..engine import labels
from ..engine.specs import network_docker_name
from ..models import Environment, Network

__all__ = ["Cleanup", "Orphan", "find_orphans", "planned_names", "remove_orphans"]


@dataclass
class Orphan:
    """A portal network that no plan names."""

    network: object  # engine.HostNetwork
    environment: str
    users: list = field(default_factory=list)
    removed: bool = False
    error: str = ""

    @property
    def name(self):
        return self.network.name

    def as_dict(self):
        return {
            "network": self.network.name,
            "id": self.network.id[:12],
            "environment": self.environment,
            "stack": self.network.labels.get(labels.STACK, ""),
            "subnets": list(self.network.subnets),
            "users": list(self.users),
            "removed": self.removed,
            "error": self.error,
        }


@dataclass
class Cleanup:
    """What a cleanup found and did."""

    environment: str
    dry_run: bool
    orphans: list = field(default_factory=list)
    #: Orphans kept because a container uses them.
    in_use: list = field(default_factory=list)
    #: Portal networks of the environment that the plan names.
    planned: list = field(default_factory=list)

    @property
    def removed(self):
        return [o for o in self.orphans if o.removed]

    @property
    def failed(self):
        return [o for o in self.orphans if o.error]


def planned_names():
    """Return the Docker names of every network of every environment's plan.

    A name depends only on the environment, the stack and the network, so
    an environment whose subnets cannot be placed still owns its names.
    """
    rows = list(Network.objects.select_related("stack"))
    return {
        network_docker_name(environment.project_name(row.stack), row.name)
        for environment in Environment.objects.all()
        for row in rows
    }


def _carries_portal_labels(network, environment_names, include_unknown, known):
    found = network.labels
    if found.get(labels.MANAGED) != "true":
        return ""
    env = found.get(labels.ENVIRONMENT, "")
    if not env:
        return ""
    if any(found.get(k) != v for k, v in labels.extra_labels().items()):
        return ""
    if env in environment_names or (include_unknown and env not in known):
        return env
    return ""


def find_orphans(client, environment, *, include_unknown=False):
    """Return the :class:`Cleanup` of ``environment`` without removing anything.

    ``include_unknown`` also takes the portal's networks whose environment
    label names no environment in the database.
    """
    result = Cleanup(environment=environment.name, dry_run=True)
    names = planned_names()
    known = set(Environment.objects.values_list("name", flat=True))
    with engine.engine_errors(engine.describe_host(environment)):
        for network in engine.host_networks(client, portal_only=True):
            env = _carries_portal_labels(
                network, {environment.name}, include_unknown, known
            )
            if not env:
                continue
            if network.name in names:
                result.planned.append(network.name)
                continue
            orphan = Orphan(network=network, environment=env)
            orphan.users = engine.network_users(client, network)
            if orphan.users:
                result.in_use.append(orphan)
            else:
                result.orphans.append(orphan)
    return result


def remove_orphans(
    client, environment, *, dry_run=True, include_unknown=False, log=None
):
    """Find the orphans of ``environment`` and, unless ``dry_run``, remove them.

    Every orphan is listed (and logged) before the first is removed; right
    before each removal its users are asked again, and one that got a
    container meanwhile is kept.
    """
    result = find_orphans(client, environment, include_unknown=include_unknown)
    result.dry_run = dry_run

    def say(text):
        if log is not None:
            log.info(text)

    for name in result.planned:
        say(f"kept {name}: in the plan")
    for orphan in result.in_use:
        say(f"kept {orphan.name}: used by {', '.join(orphan.users)}")
    for orphan in result.orphans:
        say(
            f"orphan {orphan.name} ({', '.join(orphan.network.subnets) or 'no subnet'}"
            f", environment {orphan.environment}): "
            + ("would be removed (dry run)" if dry_run else "to be removed")
        )
    if dry_run:
        return result
    with engine.engine_errors(engine.describe_host(environment)):
        for orphan in result.orphans:
            users = engine.network_users(client, orphan.network)
            if users:
                orphan.users = users
                say(f"kept {orphan.name}: now used by {', '.join(users)}")
                continue
            try:
                engine.remove_network_id(client, orphan.network)
            except engine.EngineError as exc:
                orphan.error = str(exc)
                if log is not None:
                    log.warning(orphan.error)
                continue
            orphan.removed = True
            say(f"removed {orphan.name}")
    return result

"""Which variables an environment's services and other users refer to, and how.

A service refers to variables in the fields that are resolved when its
container is created (image, command, entrypoint, environment, healthcheck,
user, shm_size, the Compose pass-through keys, ports), after its
environment's override. Other apps add their users
(:mod:`.registry`): the backups app adds each storage tier of the
environment's backup policy, whose password and cloud keys are references
too.
"""

from dataclasses import dataclass

from portal.redaction import TOKEN_RE

from ..config import service_values
from ..models import Service, ServiceOverride
from ..schema.literals import secret_field
from ..schema.values import merge_service
from .registry import variable_users

__all__ = ["RESOLVED_FIELDS", "Use", "collect_uses"]

#: The fields of a service whose references are resolved at start.
RESOLVED_FIELDS = (
    "image",
    "command",
    "entrypoint",
    "environment",
    "healthcheck",
    "user",
    "shm_size",
    "extra",
    "ports",
)


@dataclass(frozen=True)
class Use:
    """One reference to a variable.

    Attributes:
        variable: the variable's name.
        user: the service (or registered user, ``backup tier local``)
            whose configuration holds the reference.
        field: where, e.g. ``environment.POSTGRES_PASSWORD``, ``command``.
        secret: the field holds a credential (its name says so, or the
            registered user says so).
        required: the reference has no default: unset is an error.
        nonempty: ``${VAR:?...}``: empty is an error too.
        default: the default written in the reference, or None.
    """

    variable: str
    user: str
    field: str
    secret: bool
    required: bool
    nonempty: bool = False
    default: str | None = None


def _references(text):
    """Yield ``(variable, required, nonempty, default)`` for each reference."""
    for match in TOKEN_RE.finditer(text):
        name = match.group("braced") or match.group("named")
        if not name:
            continue
        op, arg = match.group("op"), match.group("arg") or ""
        if op in (":-", "-"):
            yield name, False, False, arg
        else:
            yield name, True, op == ":?", None


def _uses_in(value, user, field, secret):
    """Yield the :class:`Use` of every reference in ``value`` (walked)."""
    if isinstance(value, str):
        for variable, required, nonempty, default in _references(value):
            yield Use(variable, user, field, secret, required, nonempty, default)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _uses_in(
                item, user, f"{field}.{key}", secret or secret_field(str(key))
            )
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _uses_in(item, user, field, secret)


def collect_uses(environment):
    """Return ``(uses, service names)`` of ``environment``, in stack order.

    Three queries whatever the number of services: the services with their
    stacks and dependencies, and the environment's overrides.
    """
    services = list(
        Service.objects.select_related("stack").prefetch_related("depends_on")
    )
    overrides = {
        o.service_id: o.values
        for o in ServiceOverride.objects.filter(environment=environment)
    }
    uses = []
    for service in services:
        effective = merge_service(
            service_values(service),
            overrides.get(service.pk) or {},
            gpu_enabled=environment.gpu_enabled,
        )
        for field in RESOLVED_FIELDS:
            uses.extend(_uses_in(effective.get(field), service.name, field, False))
    for user in variable_users(environment):
        for field, value in user.values.items():
            secret = field in user.secret_fields or secret_field(field)
            uses.extend(_uses_in(value, user.name, field, secret))
    return uses, [s.name for s in services]

"""Users of variables that are not services, registered by other apps.

The credential check covers every place an environment's variables are
resolved. Services belong to stacks; backup tiers belong to the backups app,
which builds on stacks, so stacks cannot import it. An app registers a
function in its ``AppConfig.ready()`` that returns, for an environment, the
:class:`VariableUser` objects it resolves variables for (the way
``stacks.config.companions`` lets apps own configuration files).
"""

from dataclasses import dataclass, field

__all__ = ["VariableUser", "register_variable_users", "variable_users"]


@dataclass(frozen=True)
class VariableUser:
    """Something besides a service that resolves an environment's variables.

    Attributes:
        name: how messages name it, e.g. ``backup tier local``.
        values: ``{field: configured text}``; the text may hold ``${VAR}``
            references.
        secret_fields: the fields whose value is a credential (a repository
            password, a cloud secret key).
    """

    name: str
    values: dict = field(default_factory=dict)
    secret_fields: tuple = ()


_registry = {}


def register_variable_users(name, function):
    """Register ``function(environment) -> iterable of VariableUser`` as ``name``.

    A second registration under the same name replaces the first.
    """
    _registry[name] = function
    return function


def variable_users(environment):
    """Return what every registered app resolves in ``environment``."""
    users = []
    for name in sorted(_registry):
        users.extend(_registry[name](environment))
    return users

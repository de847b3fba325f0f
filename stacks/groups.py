"""Channels group names of the stacks app.

Runners publish to these groups and consumers join them; both import the
names from here.
"""

import hashlib

__all__ = ["logs_group"]


def logs_group(environment, stack, service=None):
    """Return the Channels group name of a stack's (or a service's) logs.

    ``logs.<env>.<stack>[.<service>]``; names longer than Channels allows
    (100 characters) are replaced by a hash of the same text.
    """
    name = f"logs.{environment}.{stack}" + (f".{service}" if service else "")
    if len(name) > 90:
        name = f"logs.{hashlib.sha1(name.encode()).hexdigest()}"
    return name

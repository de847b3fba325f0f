"""Who may open a console in a container, and where.

A console is a shell inside a running container: whoever holds it can read
every secret the service was given and change its data without an
operation. So it is for the Admin role only, and in a protected
environment only when its ``host_policy`` allows it by name::

    environments:
      production:
        protected: true
        host_policy:
          allow: [console]

Pages ask :func:`console_refusal` to show the link; the console's
WebSocket consumer asks it again before it starts anything.
"""

from portal.choices import Verb
from portal.permissions import verbs_of

__all__ = ["CONSOLE_POLICY_NAME", "console_allowed_by_policy", "console_refusal"]

#: The ``host_policy.allow`` name that opens consoles in a protected
#: environment.
CONSOLE_POLICY_NAME = "console"


def console_allowed_by_policy(environment):
    """Return whether ``environment``'s policy lets Admins open consoles."""
    if not environment.protected:
        return True
    allowed = (environment.host_policy or {}).get("allow") or []
    return CONSOLE_POLICY_NAME in [str(name).strip() for name in allowed]


def console_refusal(user, environment, *, verbs=None):
    """Return why ``user`` may not open a console in ``environment``, or None.

    ``verbs`` are the user's verbs there when the caller has them already
    (:func:`portal.permissions.verbs_of`).
    """
    if verbs is None:
        verbs = verbs_of(user, environment)
    who = getattr(user, "username", None) or "anonymous"
    if Verb.ADMIN not in verbs:
        return (
            f"{who} may not open a console in environment {environment.name}: "
            "consoles are for the Admin role."
        )
    if not console_allowed_by_policy(environment):
        return (
            f"Environment {environment.name} is protected and its host_policy "
            f"does not allow consoles (add {CONSOLE_POLICY_NAME!r} to "
            f"environments.{environment.name}.host_policy.allow to allow them)."
        )
    return None

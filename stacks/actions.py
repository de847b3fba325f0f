"""Which lifecycle actions make sense in which state.

A page offers Start on a stack that is stopped or missing, Stop and
Restart on one that runs, all three on a partial one; the same per service.
Pages render every action the user's role allows with the states it makes
sense in (``data-when``) and hide those that do not fit the current state,
so the live status script can show and hide them as the state changes
without asking the server. The role is checked again when the form is
posted (:func:`portal.operations.request_operation`).
"""

__all__ = [
    "ACTIONS",
    "SERVICE_ACTION_STATES",
    "STACK_ACTION_STATES",
    "allowed_actions",
    "service_actions",
    "stack_actions",
    "when",
]

#: The lifecycle verbs, in the order buttons are shown.
ACTIONS = ("start", "restart", "stop")

#: action -> stack states it makes sense in (stacks.status states).
STACK_ACTION_STATES = {
    "start": ("stopped", "missing", "partial"),
    "restart": ("running", "partial", "restarting"),
    "stop": ("running", "partial", "restarting"),
}

#: action -> container states it makes sense in ("missing": no container).
SERVICE_ACTION_STATES = {
    "start": ("exited", "created", "dead", "missing"),
    "restart": ("running", "restarting"),
    "stop": ("running", "restarting", "paused"),
}


def allowed_actions(table, state):
    """Return the actions of ``table`` that make sense in ``state``."""
    return [action for action in ACTIONS if state in table[action]]


def stack_actions(state):
    """Return the actions that make sense for a stack in ``state``."""
    return allowed_actions(STACK_ACTION_STATES, state)


def service_actions(state):
    """Return the actions that make sense for a service in ``state``."""
    return allowed_actions(SERVICE_ACTION_STATES, state)


def when(table, action):
    """Return the states of ``action`` as a ``data-when`` attribute value."""
    return " ".join(table[action])

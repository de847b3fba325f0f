"""Service functions of the network checks: what views and commands call.

Each requests one operation on one environment through
:func:`portal.operations.request_operation` (the user's role, the plan,
the queue); the runners are in :mod:`stacks.jobs.networks`. The checks
change nothing and wait for no lock; a cleanup removes only networks no
plan names, so it does not wait behind the environment's stack operations
either.
"""

from portal.operations import request_operation

__all__ = [
    "NETWORK_KINDS",
    "check_network_conflicts",
    "check_network_health",
    "cleanup_networks",
    "validate_networks",
]

#: The operation kind of each network action.
NETWORK_KINDS = {
    "conflicts": "network.check",
    "validate": "network.validate",
    "health": "network.health",
    "cleanup": "network.cleanup",
}


def _request(action, environment, *, user, parameters=None, wait=True, enqueue=True):
    return request_operation(
        NETWORK_KINDS[action],
        user=user,
        environment=environment,
        parameters=dict(parameters or {}),
        wait=wait,
        enqueue=enqueue,
    )


def check_network_conflicts(
    environment, *, user, strict=False, wait=True, enqueue=True
):
    """Request a conflict check of the environment's planned subnets.

    Args:
        strict: also fail on warnings (a planned subnet inside one of the
            daemon's default address pools).
    """
    return _request(
        "conflicts",
        environment,
        user=user,
        parameters={"strict": strict},
        wait=wait,
        enqueue=enqueue,
    )


def validate_networks(environment, *, user, wait=True, enqueue=True):
    """Request a validation of the environment's networks and attachments."""
    return _request("validate", environment, user=user, wait=wait, enqueue=enqueue)


def check_network_health(environment, *, user, wait=True, enqueue=True):
    """Request health probes of the environment's running stacks."""
    return _request("health", environment, user=user, wait=wait, enqueue=enqueue)


def cleanup_networks(
    environment,
    *,
    user,
    dry_run=True,
    include_unknown=False,
    wait=True,
    enqueue=True,
):
    """Request a cleanup of the environment's orphaned networks.

    Args:
        dry_run: only list them (the default).
        include_unknown: also the portal's networks labelled with an
            environment the database does not have.
    """
    return _request(
        "cleanup",
        environment,
        user=user,
        parameters={"dry_run": dry_run, "include_unknown": include_unknown},
        wait=wait,
        enqueue=enqueue,
    )

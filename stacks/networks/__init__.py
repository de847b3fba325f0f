"""Network checks: conflicts before a start, validation, health, cleanup.

================  ===========================================================
module            what it holds
================  ===========================================================
``conflicts``     the pure conflict sweep and free-subnet suggestions
``plan``          the planned networks of environments and Docker hosts
``hostfacts``     what holds addresses on a host, as conflict occupants
``check``         conflict checks on demand and the start's preflight
``validate``      networks, attachments and name resolution as planned
``health``        health probes from inside each stack's network
``cleanup``       orphaned portal networks, dry run first
``picture``       the network page's map of hosts, environments, subnets
``operations``    service functions requesting the network operations
================  ===========================================================

The runners are in :mod:`stacks.jobs.networks`; the engine reads (routes,
pools, probes, names resolved inside containers) in :mod:`stacks.engine`.
"""

from .check import CheckResult, check_environment, preflight
from .cleanup import Cleanup, find_orphans, planned_names, remove_orphans
from .conflicts import (
    Conflict,
    Occupant,
    Planned,
    PlanProblem,
    Report,
    find_conflicts,
    pairwise_conflicts,
)
from .health import check_health, probes_for, prune_probes
from .plan import environment_networks, planned_on_host
from .validate import Validation, validate_environment

__all__ = [
    "CheckResult",
    "Cleanup",
    "Conflict",
    "Occupant",
    "PlanProblem",
    "Planned",
    "Report",
    "Validation",
    "check_environment",
    "check_health",
    "environment_networks",
    "find_conflicts",
    "find_orphans",
    "pairwise_conflicts",
    "planned_names",
    "planned_on_host",
    "preflight",
    "probes_for",
    "prune_probes",
    "remove_orphans",
    "validate_environment",
]

"""Guards of destructive operations, registered by other apps.

A wipe (and a restore onto a live service) asks every registered guard
before it destroys anything: ``guard(environment, services, *, now)``
returns a :class:`GuardAnswer`, the problems that forbid the run (each a
sentence that says what to do) and the evidence that allows it (e.g. the
backup records that could undo it). ``stacks`` knows no feature app; the
backups app registers "a fresh verified backup of that scope" in its
``AppConfig.ready()``.
"""

from dataclasses import dataclass, field

from django.utils import timezone

__all__ = ["GuardAnswer", "check_destroy", "register_destroy_guard"]

_guards = {}


@dataclass
class GuardAnswer:
    """What one guard says about a destructive run."""

    problems: list = field(default_factory=list)
    evidence: list = field(default_factory=list)


def register_destroy_guard(name, guard):
    """Register ``guard(environment, services, *, now)`` under ``name``."""
    _guards[name] = guard
    return guard


def check_destroy(environment, services, *, now=None):
    """Ask every guard about destroying ``services``' data in ``environment``.

    Returns one :class:`GuardAnswer` with every guard's problems and
    evidence, in the order of their names.
    """
    now = now or timezone.now()
    answer = GuardAnswer()
    for name in sorted(_guards):
        found = _guards[name](environment, list(services), now=now)
        answer.problems.extend(found.problems)
        answer.evidence.extend(found.evidence)
    return answer

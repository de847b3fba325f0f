"""The credential check of an environment, for the command, the page and starts.

:func:`check_environment` resolves nothing into a container: it reads the
environment's variables (:func:`stacks.secrets.environ_for`, the only place
values come from) and judges them with :mod:`.rules`. The report names
variables and their users, never a value.

:func:`check_before_start` is what a start or restart runs first: in a
protected environment any problem of the variables its stacks use refuses
the operation, with the same sentences ``manage.py check_credentials``
prints; elsewhere each problem is a warning in the operation log.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from portal.operations import OperationFailed

from ..models import Environment, Service
from ..secrets import environ_for
from .rules import (
    BUILTIN_KNOWN_VALUES,
    ERROR,
    OK,
    WARNING,
    Policy,
    evaluate,
    get_config,
)
from .usage import collect_uses

__all__ = [
    "CredentialReport",
    "check_before_start",
    "check_environment",
    "example_values",
    "known_values",
    "policy_for",
]

_EXAMPLE_LINE_RE = re.compile(
    r"^[#\s]*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$"
)


@dataclass
class CredentialReport:
    """The credential status of an environment (or of some of its stacks)."""

    environment: str
    protected: bool
    variables: list
    stacks: list | None = None

    def at(self, level):
        """Return the variables whose status is ``level``."""
        return [v for v in self.variables if v.level == level]

    @property
    def errors(self):
        """Return the sentences of every error."""
        return [m for v in self.at(ERROR) for m in v.messages]

    @property
    def warnings(self):
        """Return the sentences of every warning."""
        return [m for v in self.at(WARNING) for m in v.messages]

    @property
    def level(self):
        """Return ``error``, ``warning`` or ``ok``: the worst variable's."""
        for level in (ERROR, WARNING):
            if self.at(level):
                return level
        return OK

    @property
    def refused(self):
        """Whether a start would be refused (protected, with errors)."""
        return self.protected and bool(self.errors)

    def counts(self):
        """Return ``{level: number of variables}``."""
        return {level: len(self.at(level)) for level in (OK, WARNING, ERROR)}

    def summary(self):
        """Return one line: the counts and what a start would do."""
        counts = self.counts()
        scope = f" (stacks {', '.join(self.stacks)})" if self.stacks else ""
        text = (
            f"Credentials of {self.environment}{scope}: {len(self.variables)} "
            f"variable(s), {counts[ERROR]} with errors, {counts[WARNING]} with "
            f"warnings, {counts[OK]} ok"
        )
        if self.refused:
            return f"{text}; a start is refused."
        if self.protected:
            return f"{text}; protected: a problem would refuse a start."
        return f"{text}; not protected: problems are warnings."

    def refusal(self):
        """Return the message of a refused start."""
        problems = self.errors
        return (
            f"Refused: {len(problems)} credential problem(s) in protected "
            f"environment {self.environment}: {'; '.join(problems)}. Set the "
            f"variables in configs/env/{self.environment}.env where the worker "
            f"runs (manage.py check_credentials --env {self.environment} checks "
            "every variable)."
        )

    def as_dict(self):
        """Return the report as plain data (``check_credentials --json``)."""
        return {
            "environment": self.environment,
            "protected": self.protected,
            "stacks": self.stacks,
            "level": self.level,
            "refused": self.refused,
            "counts": self.counts(),
            "variables": [
                {
                    "variable": v.variable,
                    "users": list(v.users),
                    "credential": v.credential,
                    "level": v.level,
                    "problems": [
                        {"kind": p.kind, "message": m}
                        for p, m in zip(v.problems, v.messages, strict=True)
                    ],
                }
                for v in self.variables
            ],
        }


def example_values(folder=None):
    """Return the values written in ``<PORTAL_CONFIG_DIR>/env/*.env.example``.

    Commented-out lines count: an example's ``# POSTGRES_PASSWORD=...`` is
    exactly what gets copied.
    """
    folder = Path(folder or Path(settings.PORTAL_CONFIG_DIR) / "env")
    values = set()
    for path in sorted(folder.glob("*.env.example")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = _EXAMPLE_LINE_RE.match(line)
            if not match:
                continue
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if value:
                values.add(value)
    return values


def known_values():
    """Return the values a credential may not have, lower-cased.

    The built-in defaults, ``PORTAL_CREDENTIALS["KNOWN_VALUES"]``, the
    example env files' values, and every value of every environment's
    ``settings.variables`` (configuration is not secret).
    """
    values = set(BUILTIN_KNOWN_VALUES)
    values.update(str(v) for v in get_config()["KNOWN_VALUES"])
    values.update(example_values())
    for config in Environment.objects.values_list("settings", flat=True):
        for value in ((config or {}).get("variables") or {}).values():
            if value not in (None, ""):
                values.add(str(value))
    return frozenset(v.strip().lower() for v in values if v.strip())


def policy_for(environment):
    """Return the :class:`~.rules.Policy` of ``environment``."""
    own = ((environment.settings or {}).get("credentials")) or {}
    return Policy(
        protected=environment.protected,
        min_length=int(own.get("min_length") or get_config()["MIN_LENGTH"]),
        allow_empty=frozenset(own.get("allow_empty") or ()),
        known_values=known_values(),
    )


def check_environment(environment, *, stacks=None, environ=None):
    """Return the :class:`CredentialReport` of ``environment``.

    Args:
        stacks: only the variables the services of these stacks use (the
            check a start of them runs); None: every variable of the
            environment, backup tiers included.
        environ: the variables to judge; default
            :func:`stacks.secrets.environ_for` the environment.

    Raises:
        stacks.secrets.InvalidEnvFile: the environment's file is unreadable.
    """
    uses, services = collect_uses(environment)
    if environ is None:
        environ = environ_for(environment)
    statuses = evaluate(uses, environ, policy_for(environment), user_order=services)
    names = None
    if stacks is not None:
        scope = set(
            Service.objects.filter(stack__in=stacks).values_list("name", flat=True)
        )
        statuses = [s for s in statuses if scope & set(s.users)]
        names = [s.name for s in stacks]
    return CredentialReport(
        environment=environment.name,
        protected=environment.protected,
        variables=statuses,
        stacks=names,
    )


def check_before_start(environment, stacks, *, log):
    """Check the credentials ``stacks`` use before they start in ``environment``.

    Raises:
        OperationFailed: the environment is protected and a variable has a
            problem; the message names each variable and its users.
    """
    report = check_environment(environment, stacks=stacks)
    if report.refused:
        raise OperationFailed(report.refusal())
    for message in report.warnings:
        log.warning(f"Credentials: {message}")
    if not report.warnings:
        log.info(
            f"Credentials: {len(report.variables)} variable(s) of "
            f"{', '.join(report.stacks)} checked, no problems"
        )
    return report

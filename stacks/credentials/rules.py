"""The credential rules: what is wrong with a variable's value, never saying it.

:func:`evaluate` takes the references of an environment (:mod:`.usage`), the
values they resolve against (``stacks.secrets.environ_for``) and a
:class:`Policy`, and returns one :class:`VariableStatus` per variable.

Every referenced variable must be set, unless each reference to it has a
default. A *credential* (a variable whose name says it is a secret, or that
a secret field refers to: ``MINIO_ACCESS_KEY: ${MINIO_ROOT_USER}``) must
also not be:

- empty (unless the environment's ``settings.credentials.allow_empty``
  names it),
- left unset so that a default written in the configuration is used,
- a well-known value: a common default (``postgres``, ``minioadmin``,
  ``admin``, ``changeme``, ...), a value of an example env file
  (``configs/env/*.env.example``, commented lines too) or a value written in
  any environment's ``settings.variables`` (the configuration is not
  secret),
- shorter than the minimum length,
- the same as another credential whose users differ: a service that may
  read one would hold the other's secret too. Two variables read by
  exactly the same services share nothing new and are not reported.

In a protected environment each problem is an error (a start is refused);
elsewhere it is a warning.
"""

from dataclasses import dataclass, field

from django.conf import settings

from ..schema.literals import secret_field

__all__ = [
    "BUILTIN_KNOWN_VALUES",
    "DEFAULTS",
    "ERROR",
    "OK",
    "Policy",
    "Problem",
    "VariableStatus",
    "WARNING",
    "evaluate",
    "get_config",
]

OK, WARNING, ERROR = "ok", "warning", "error"
_RANK = {OK: 0, WARNING: 1, ERROR: 2}

#: Values every attacker tries first (compared without case).
BUILTIN_KNOWN_VALUES = (
    "postgres",
    "minioadmin",
    "admin",
    "administrator",
    "root",
    "changeme",
    "change-me",
    "changeit",
    "password",
    "passw0rd",
    "secret",
    "default",
    "example",
    "test",
    "guest",
    "letmein",
    "qwerty",
    "123456",
    "12345678",
    "password123",
    "admin123",
)

DEFAULTS = {
    # Characters a credential needs at least; an environment's
    # settings.credentials.min_length overrides it.
    "MIN_LENGTH": 16,
    # More values to refuse as well known, besides the built-in ones.
    "KNOWN_VALUES": (),
}


def get_config():
    """Return ``settings.PORTAL_CREDENTIALS`` over :data:`DEFAULTS`."""
    return {**DEFAULTS, **getattr(settings, "PORTAL_CREDENTIALS", {})}


@dataclass(frozen=True)
class Policy:
    """What an environment asks of its credentials."""

    protected: bool
    min_length: int
    allow_empty: frozenset = frozenset()
    known_values: frozenset = frozenset()

    @property
    def level(self):
        """The level of every problem: errors where the environment is protected."""
        return ERROR if self.protected else WARNING


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a variable, in words that hold no value."""

    kind: str
    text: str


@dataclass
class VariableStatus:
    """A variable of an environment: who uses it and what is wrong with it."""

    variable: str
    users: list
    credential: bool
    level: str = OK
    problems: list = field(default_factory=list)

    @property
    def messages(self):
        """Return one sentence per problem, naming the variable and its users."""
        return [
            f"{self.variable} {problem.text} (used by {', '.join(self.users)})"
            for problem in self.problems
        ]

    def worse(self, level):
        if _RANK[level] > _RANK[self.level]:
            self.level = level


def _known(value, policy):
    return value.strip().lower() in policy.known_values


def evaluate(uses, environ, policy, *, user_order=()):
    """Return the :class:`VariableStatus` of every variable ``uses`` refer to.

    ``user_order`` lists users (services) in the order messages name them;
    others follow in the order they first refer to the variable.
    """
    rank = {name: i for i, name in enumerate(user_order)}
    by_variable = {}
    for use in uses:
        by_variable.setdefault(use.variable, []).append(use)

    statuses = {}
    for variable, its_uses in by_variable.items():
        users = []
        for use in its_uses:
            if use.user not in users:
                users.append(use.user)
        first = {user: len(rank) + i for i, user in enumerate(users)}
        users.sort(key=lambda u: rank.get(u, first[u]))
        credential = secret_field(variable) or any(u.secret for u in its_uses)
        status = VariableStatus(variable, users, credential)
        statuses[variable] = status
        value = environ.get(variable)
        problem = _presence(variable, value, its_uses, credential, policy)
        if problem is None and credential and value:
            problem = _strength(value, policy)
        if problem is not None:
            status.problems.append(problem)
            status.worse(policy.level)

    for status, other in _reused(statuses, environ):
        status.problems.append(
            Problem(
                "reused",
                f"has the same value as {other.variable} (used by "
                f"{', '.join(other.users)})",
            )
        )
        status.worse(policy.level)
    return list(statuses.values())


def _presence(variable, value, uses, credential, policy):
    """Return the problem of an unset or empty variable, or None."""
    if value is None:
        if any(u.required for u in uses):
            return Problem("missing", "is not set")
        if credential and any(u.default for u in uses):
            return Problem(
                "default",
                "is not set, so the default written in the configuration is used",
            )
        return None
    if value == "":
        if any(u.nonempty for u in uses):
            return Problem("missing", "is empty")
        if credential and variable not in policy.allow_empty:
            return Problem("empty", "is empty")
    return None


def _strength(value, policy):
    """Return the problem of a weak credential value, or None."""
    if _known(value, policy):
        return Problem(
            "known",
            "is a well-known value (a common default, or written in the "
            "configuration or an example env file)",
        )
    if len(value) < policy.min_length:
        return Problem("short", f"is shorter than {policy.min_length} characters")
    return None


def _reused(statuses, environ):
    """Yield ``(status, other)`` for credentials sharing a value across users."""
    by_value = {}
    for status in statuses.values():
        value = environ.get(status.variable)
        # A well-known value is reported as such; that others share it is
        # no news.
        known = any(p.kind == "known" for p in status.problems)
        if status.credential and value and not known:
            by_value.setdefault(value, []).append(status)
    for group in by_value.values():
        for status in group:
            for other in group:
                if other is not status and set(other.users) != set(status.users):
                    yield status, other

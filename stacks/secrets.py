"""Variable references in service configuration, and their resolution.

Service definitions carry references, never secret values:
``POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}``. The database stores the
reference text; :func:`resolve` turns it into the value only when a container
is created, from the environment's own sources (see :func:`environ_for`).

The syntax is Compose's interpolation syntax:

``$$``                  a literal ``$``
``$VAR``, ``${VAR}``    the value of VAR; unset is an error (:class:`MissingSecret`)
``${VAR:-default}``     default when VAR is unset or empty
``${VAR-default}``      default when VAR is unset
``${VAR:?message}``     error with message when VAR is unset or empty
``${VAR?message}``      error with message when VAR is unset

Unlike Compose, an unset variable without a default is an error rather than
an empty string: a container started with an empty password is worse than
one that does not start.
"""

import os
import re
from pathlib import Path

from django.conf import settings

from portal.redaction import NAME_PATTERN, TOKEN_RE

__all__ = [
    "InvalidEnvFile",
    "InvalidReference",
    "MissingSecret",
    "environ_for",
    "invalid_references",
    "is_reference",
    "load_env_file",
    "references",
    "resolve",
    "resolve_all",
    "sources_hint",
]

_NAME = NAME_PATTERN
_TOKEN_RE = TOKEN_RE
_PURE_RE = re.compile(rf"\$\{{({_NAME})\}}")
_PURE_WITH_DEFAULT_RE = re.compile(rf"\$\{{({_NAME})(?::?-[^}}$]*)?\}}")


class MissingSecret(Exception):
    """A referenced variable is not set and the reference has no default."""

    def __init__(self, variable, service=None, message=None):
        self.variable = variable
        self.service = service
        where = f" (service {service})" if service else ""
        detail = f": {message}" if message else " and the reference has no default"
        super().__init__(f"variable {variable} is not set{where}{detail}")


class InvalidEnvFile(ValueError):
    """An environment file cannot be read; the message names file and line."""


class InvalidReference(ValueError):
    """A ``$`` that starts no valid reference (write ``$$`` for a dollar)."""


def is_reference(value, *, allow_default=False):
    """Return whether ``value`` is exactly one ``${VAR}`` reference.

    With ``allow_default``, ``${VAR:-default}`` and ``${VAR-default}`` count
    too. Anything else (plain text, text around a reference, ``$VAR``) does
    not.
    """
    if not isinstance(value, str):
        return False
    pattern = _PURE_WITH_DEFAULT_RE if allow_default else _PURE_RE
    return bool(pattern.fullmatch(value))


def references(value):
    """Return the names of the variables ``value`` refers to, in order, once.

    Lists and dicts are searched recursively (dict values only).
    """
    found = []
    for text in _strings(value):
        for match in _TOKEN_RE.finditer(text):
            name = match.group("braced") or match.group("named")
            if name and name not in found:
                found.append(name)
    return found


def invalid_references(value):
    """Return the strings in ``value`` that hold a ``$`` starting nothing.

    ``"cost $5"`` is invalid (write ``"cost $$5"``); ``"${A"`` is invalid too.
    """
    bad = []
    for text in _strings(value):
        if any(m.group("invalid") is not None for m in _TOKEN_RE.finditer(text)):
            bad.append(text)
    return bad


def resolve(value, environ=None, *, service=None):
    """Return ``value`` with every reference replaced by its variable's value.

    Args:
        value: the text to resolve; anything but a string is returned as is.
        environ: where variables are looked up; ``os.environ`` when None.
        service: named in the error message when a variable is missing.

    Raises:
        MissingSecret: a variable is unset and its reference has no default.
        InvalidReference: a ``$`` starts no valid reference.
    """
    if not isinstance(value, str) or "$" not in value:
        return value
    if environ is None:
        environ = os.environ

    def substitute(match):
        if match.group("escape") is not None:
            return "$"
        if match.group("invalid") is not None:
            raise InvalidReference(
                f"invalid variable reference in {value!r} at position "
                f"{match.start()} (write $$ for a literal dollar)"
            )
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = environ.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return arg if current is None else current
        if op == ":?":
            if not current:
                raise MissingSecret(name, service, arg or "set and non-empty required")
            return current
        if op == "?":
            if current is None:
                raise MissingSecret(name, service, arg or "required")
            return current
        if current is None:
            raise MissingSecret(name, service)
        return current

    return _TOKEN_RE.sub(substitute, value)


def resolve_all(value, environ=None, *, service=None):
    """Return a copy of ``value`` with every string in it resolved.

    Dict keys are left alone; lists and dicts are walked recursively.
    """
    if environ is None:
        environ = os.environ
    if isinstance(value, str):
        return resolve(value, environ, service=service)
    if isinstance(value, dict):
        return {k: resolve_all(v, environ, service=service) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_all(v, environ, service=service) for v in value]
    return value


def load_env_file(path):
    """Return the variables of a ``NAME=value`` file (``.env`` format).

    Blank lines and ``#`` comments are skipped, ``export`` is allowed, and one
    pair of matching quotes around a value is removed. Values are not
    interpolated.
    """
    variables = {}
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidEnvFile(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte "
            f"offset {exc.start}); save the file as UTF-8"
        ) from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(_NAME, name):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        variables[name] = value
    return variables


def environ_for(environment, process=None):
    """Return the variables references resolve against in ``environment``.

    Only the environment's own sources, from lowest to highest precedence:

    1. its ``settings["variables"]`` (non-secret defaults such as the
       demo's);
    2. the variables of the process environment (``process``, default
       ``os.environ``) that its ``settings["process_variables"]`` names, so
       a worker can pass on what an operator exported for it, but nothing
       else: the portal's own settings (``PORTAL_OWN_VARIABLES``: its secret
       key, its database URL) never reach a service, even when named;
    3. the file ``<PORTAL_CONFIG_DIR>/env/<environment name>.env``, so
       several environments keep different values for the same name on one
       worker.
    """
    config = getattr(environment, "settings", None) or {}
    variables = {}
    declared = config.get("variables") or {}
    variables.update({str(k): "" if v is None else str(v) for k, v in declared.items()})
    process = os.environ if process is None else process
    own = set(getattr(settings, "PORTAL_OWN_VARIABLES", ()))
    for name in config.get("process_variables") or []:
        name = str(name)
        if name in own or name.startswith("PORTAL_"):
            continue
        if name in process:
            variables[name] = process[name]
    env_file = Path(settings.PORTAL_CONFIG_DIR) / "env" / f"{environment.name}.env"
    if env_file.is_file():
        variables.update(load_env_file(env_file))
    return variables


def sources_hint(environment):
    """Return where the variables of ``environment`` come from, for messages."""
    return (
        f"variables of environment {environment.name} come from its "
        f"settings.variables, configs/env/{environment.name}.env and the process "
        "variables its settings.process_variables names; the portal's own "
        "environment is not passed on"
    )


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)

"""Hiding secret values in what the portal shows, logs and records.

Configuration holds references (``POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}``)
and, where someone typed one, literal secrets. :func:`redact` hides the
values and keeps the references: a reviewer of an audit entry or an
operation log sees which variable a change asked for, never what it holds.
For a variable whose name says it is a secret (:data:`SECRET_NAME_RE`):

=====================================  ======================================
configured                             shown
=====================================  ======================================
``${POSTGRES_PASSWORD}``               ``${POSTGRES_PASSWORD}``
``${PASSWORD:-changeme}``              ``${PASSWORD:-********}``
``${TOKEN:?set it in .env}``           ``${TOKEN:?set it in .env}``
``postgres://u:${PW}@db/x``            ``********${PW}********``
``hunter2``                            ``********``
=====================================  ======================================

The reference grammar (Compose's interpolation) is defined here once;
``stacks.secrets`` resolves references with the same expression.
"""

import re

__all__ = [
    "NAME_PATTERN",
    "REDACTED",
    "SECRET_NAME_RE",
    "TOKEN_RE",
    "is_secret_name",
    "redact",
    "redact_value",
]

#: Variable names whose values are secrets.
SECRET_NAME_RE = re.compile(r"PASSWORD|SECRET|_KEY|TOKEN|SALT", re.IGNORECASE)

REDACTED = "********"

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"

#: One token of a value: an escaped dollar, a braced reference (with an
#: optional operator and argument), an unbraced reference, or a dollar that
#: starts none of these (invalid). Nested references in a default
#: (``${A:-${B}}``) are not supported: the argument may not contain "$".
TOKEN_RE = re.compile(
    r"\$(?:"
    r"(?P<escape>\$)"
    rf"|\{{(?P<braced>{NAME_PATTERN})(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}}$]*))?\}}"
    rf"|(?P<named>{NAME_PATTERN})"
    r"|(?P<invalid>)"
    r")"
)


def is_secret_name(name):
    """Return whether the variable ``name`` holds a secret."""
    return bool(SECRET_NAME_RE.search(str(name)))


def redact_value(value):
    """Return a secret-named ``value`` with its literal text hidden.

    References stay as written; a default after ``:-`` or ``-`` is a value
    and is hidden; an error message after ``:?`` or ``?`` is not. Anything
    but a string is hidden whole.
    """
    if not isinstance(value, str):
        return REDACTED
    parts = []
    literal = False
    position = 0
    for match in TOKEN_RE.finditer(value):
        if match.start() > position or match.group("escape") is not None:
            literal = True
        if match.group("escape") is not None or match.group("invalid") is not None:
            literal = True
            position = match.end()
            continue
        if literal:
            parts.append(REDACTED)
            literal = False
        if match.group("named"):
            parts.append(f"${match.group('named')}")
        else:
            op, arg = match.group("op"), match.group("arg")
            if op in (":-", "-") and arg:
                arg = REDACTED
            parts.append(f"${{{match.group('braced')}{op or ''}{arg or ''}}}")
        position = match.end()
    if position < len(value):
        literal = True
    if literal:
        parts.append(REDACTED)
    return "".join(parts) if parts else REDACTED


def redact(mapping):
    """Return a copy of ``mapping`` with the values of secret names hidden.

    Keys matching :data:`SECRET_NAME_RE` get :func:`redact_value`; nested
    dicts are redacted too, and lists of ``"NAME=value"`` strings
    (Compose's list form of ``environment``) have their secret values
    hidden the same way.
    """
    if isinstance(mapping, dict):
        result = {}
        for key, value in mapping.items():
            if is_secret_name(key) and not isinstance(value, (dict, list)):
                result[key] = redact_value(value)
            else:
                result[key] = redact(value)
        return result
    if isinstance(mapping, list):
        return [_redact_item(item) for item in mapping]
    return mapping


def _redact_item(item):
    if isinstance(item, str) and "=" in item:
        name, _, value = item.partition("=")
        if is_secret_name(name):
            return f"{name}={redact_value(value)}"
        return item
    return redact(item)

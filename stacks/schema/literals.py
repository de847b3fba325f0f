"""What counts as a secret written into configuration instead of referred to.

Configuration refers to secrets (``POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}``);
a value written in its place is a hard-coded secret. :func:`walk` finds
them in any loaded document (``stacks.yaml``, a rendered compose file, the
database's configuration as ``export_configs`` writes it), and
:func:`in_field` and :func:`in_text` judge one value, so the importer
(:mod:`.secretrules`) and the scanner (``stacks.credentials.scan``) apply the
same rules:

- a literal value, or a reference with a default, in a field whose name
  says it holds a secret (``SECRET_NAME_RE``: ``PASSWORD``, ``SECRET``,
  ``_KEY``, ``TOKEN``, ``SALT``; ``NAME=value`` list items too);
- a literal value after a secret option in a command (``--api-key x``,
  ``--requirepass x``);
- a password written in a URL (``postgres://app:hunter2@db/app``);
- a private key (``-----BEGIN ... PRIVATE KEY-----``);
- a string in a well-known token format (AWS access key ids, GitHub,
  GitLab, Slack, Hugging Face, Google and Stripe keys, ``sk-`` API keys,
  JSON Web Tokens).

Nothing here returns or formats the value itself: a finding says what was
found and where, so reporting it leaks nothing.
"""

import re
import shlex
from dataclasses import dataclass

from portal.redaction import TOKEN_RE, is_secret_name

__all__ = [
    "ALLOW_MARKER",
    "ARGUMENT_KEYS",
    "Literal",
    "in_arguments",
    "in_field",
    "in_text",
    "literal_part",
    "secret_field",
    "walk",
]

#: A comment holding this text allows what is found on its line (or, on a
#: mapping's key, anywhere below it): ``# scan-secrets: allow (why)``.
ALLOW_MARKER = "scan-secrets: allow"

#: Keys whose strings are command lines: options in them are looked at.
ARGUMENT_KEYS = ("command", "entrypoint", "test")

# Secret-named fields that hold where a secret is, not the secret itself.
_NOT_SECRET_SUFFIXES = ("_FILE", "_PATH", "_DIR", "_FILENAME")
# Options whose argument is a password without saying so in SECRET_NAME_RE.
_SECRET_OPTIONS = ("PASS", "PASSWD", "REQUIREPASS", "MASTERAUTH")

_REFERENCE = "\0"  # a reference without a default (or with an empty one)
_DEFAULT = "\1"  # a reference whose default is written in the file

_PRIVATE_KEY_RE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_TOKEN_FORMATS = (
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "a GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    (
        "a Slack webhook URL",
        re.compile(r"https://hooks\.slack\.com/services/T\w+/B\w+/\w+"),
    ),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("a Stripe secret key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,}")),
    (
        "an API key (sk-...)",
        re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_]{20,}"),
    ),
    (
        "a JSON Web Token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
)
# scheme://user:password@ ; the password may not hold "@", "/" or spaces.
_URL_PASSWORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:([^\s@/]+)@")
_OPTION_RE = re.compile(r"^--?([A-Za-z][A-Za-z0-9_.-]*)(?:=(.*))?$", re.DOTALL)
_ASSIGNMENT_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Literal:
    """One hard-coded secret: its kind and what a person is told about it."""

    kind: str
    what: str


SECRET_FIELD = Literal(
    "secret-field",
    "a literal value in a secret field (write a ${VAR} reference and set the "
    "variable in configs/env/<environment>.env)",
)
SECRET_DEFAULT = Literal(
    "secret-default",
    "a default value for a secret (write ${VAR} without a default and set the "
    "variable in configs/env/<environment>.env)",
)
PRIVATE_KEY = Literal("private-key", "a private key")
URL_PASSWORD = Literal(
    "url-password", "a password written in a URL (write a ${VAR} reference for it)"
)


def _mask(text):
    """Return ``text`` with each reference replaced by one marker character."""

    def substitute(match):
        if match.group("escape") is not None or match.group("invalid") is not None:
            return "$"
        if match.group("op") in (":-", "-") and match.group("arg"):
            return _DEFAULT
        return _REFERENCE

    return TOKEN_RE.sub(substitute, text)


def literal_part(value):
    """Return how much of ``value`` is written rather than referred to.

    ``""`` when nothing is (a reference, an empty value, a boolean),
    ``"default"`` when only the default of a reference is, else
    ``"literal"``.
    """
    if value is None or isinstance(value, bool):
        return ""
    if not isinstance(value, str):
        return "literal"
    rest = _mask(value).replace(_REFERENCE, "")
    if not rest.strip():
        return ""
    if not rest.replace(_DEFAULT, "").strip():
        return "default"
    return "literal"


def secret_field(name):
    """Return whether a field (a variable, a key) called ``name`` holds a secret."""
    upper = str(name).upper()
    return is_secret_name(upper) and not upper.endswith(_NOT_SECRET_SUFFIXES)


def _secret_option(name):
    normal = re.sub(r"[-.]", "_", name).upper()
    return secret_field(normal) or normal.endswith(_SECRET_OPTIONS)


def in_text(text):
    """Return the hard-coded secrets in a string, whatever field holds it."""
    if not isinstance(text, str) or len(text) < 8:
        return []
    found = []
    if _PRIVATE_KEY_RE.search(text):
        found.append(PRIVATE_KEY)
    masked = _mask(text)
    for what, pattern in _TOKEN_FORMATS:
        if pattern.search(masked):
            found.append(Literal("token", f"what looks like {what}"))
    for match in _URL_PASSWORD_RE.finditer(masked):
        if match.group(1).replace(_REFERENCE, ""):
            found.append(URL_PASSWORD)
            break
    return found


def in_field(name, value):
    """Return the hard-coded secrets in the value of field ``name``."""
    found = []
    if secret_field(name):
        part = literal_part(value)
        if part == "literal":
            found.append(SECRET_FIELD)
        elif part == "default":
            found.append(SECRET_DEFAULT)
    if isinstance(value, str):
        found.extend(f for f in in_text(value) if f not in found)
    return found


def _path_like(value):
    return value.startswith(("/", "./", "../", "~"))


def in_arguments(arguments):
    """Return ``[(index, Literal)]`` for secret options given a literal value.

    ``arguments`` is a command as a list (``["--api-key", "x"]``) or as one
    string, split as a shell would.
    """
    if isinstance(arguments, str):
        try:
            arguments = shlex.split(arguments)
        except ValueError:
            return []
        single = True
    else:
        single = False
    found = []
    for index, item in enumerate(arguments):
        if not isinstance(item, str):
            continue
        match = _OPTION_RE.match(item)
        if not match or not _secret_option(match.group(1)):
            continue
        value = match.group(2)
        if value is None and index + 1 < len(arguments):
            following = arguments[index + 1]
            if isinstance(following, str) and not following.startswith("-"):
                value = following
        if value and not _path_like(value) and literal_part(value):
            found.append(
                (
                    0 if single else index,
                    Literal(
                        "secret-option",
                        f"a literal value after the secret option --{match.group(1)}",
                    ),
                )
            )
    return found


def walk(document, path=""):
    """Yield ``(container, key, path, Literal)`` for each hard-coded secret.

    ``container[key]`` is where it was found (for the line of a loaded
    file, see ``stacks.schema.loader.line_of``); ``path`` is the dotted key
    path, with ``NAME=value`` list items named by their variable
    (``services.db.environment.PASSWORD``), as in a mapping.
    """
    yield from _walk(document, path, arguments=False)


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


def _walk(value, path, *, arguments):
    if isinstance(value, dict):
        for key, item in value.items():
            item_path = _join(path, key)
            if isinstance(item, (dict, list)):
                yield from _walk(item, item_path, arguments=key in ARGUMENT_KEYS)
                continue
            for found in in_field(str(key), item):
                yield value, key, item_path, found
            if key in ARGUMENT_KEYS and isinstance(item, str):
                for _, found in in_arguments(item):
                    yield value, key, item_path, found
        return
    if not isinstance(value, list):
        return
    for index, item in enumerate(value):
        if isinstance(item, (dict, list)):
            yield from _walk(item, f"{path}[{index}]", arguments=False)
            continue
        if not isinstance(item, str):
            continue
        match = _ASSIGNMENT_RE.match(item)
        if match and not arguments:
            name, text = match.groups()
            for found in in_field(name, text):
                yield value, index, _join(path, name), found
            continue
        for found in in_text(item):
            yield value, index, f"{path}[{index}]", found
        if arguments and " " in item.strip():
            # A shell command inside an exec list (CMD-SHELL, sh -c ...).
            for _, found in in_arguments(item):
                yield value, index, f"{path}[{index}]", found
    if arguments:
        for index, found in in_arguments(value):
            yield value, index, f"{path}[{index}]", found

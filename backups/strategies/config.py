"""The environment's configuration: rendered compose files and ``configs/``.

Environment-wide, not a service's: the ``backup.config`` operation
(:mod:`backups.config_backup`) runs it. One tar, ``config.tar``, streamed
into restic:

``compose/compose.<stack>.yml``
    each stack rendered for the environment
    (:func:`stacks.compose.render_compose`), what ``docker compose -f``
    would run;
``configs/<path>``
    every file of the configuration folder (``PORTAL_CONFIG_DIR``): the
    YAML files, the environment files, the stand-in image contexts.
    Caches (``__pycache__``, ``*.pyc``) and executables copied in from the
    host's packages (ELF binaries) are left out.

Secrets are redacted before a byte leaves: in YAML files and rendered
compose files a value under a secret-looking key (``*PASSWORD*``,
``*_KEY``, ... see :mod:`portal.redaction`) keeps its ``${VAR}``
references and loses any literal text (``POSTGRES_PASSWORD:
demo-password`` becomes ``********``; ``${POSTGRES_PASSWORD}`` stays); in
``.env`` files the same for ``NAME=value`` lines. Then, as a net under
that, every value of a secret variable of the environment (secret-looking
names, variables a secret-looking key refers to, such as
``MINIO_ACCESS_KEY: ${MINIO_ROOT_USER}``, and the storage tiers'
credentials) is replaced by ``REDACTED`` wherever it still appears, in any
file. Values
shorter than :data:`MIN_SECRET_LENGTH` characters are not searched for:
they would match ordinary text.

The manifest: the number of files, their bytes and the sha256 of each (as
archived, after redaction), the stacks rendered and how many values were
redacted.
"""

import hashlib
import re
from pathlib import Path

from django.conf import settings

from portal.redaction import REDACTED, is_secret_name, redact_value
from stacks.compose import render_compose, stack_plan
from stacks.config import effective_service
from stacks.models import Service, Stack
from stacks.secrets import environ_for, references

from ..models import BackupPolicy, StorageTier
from ..schema import SECRET_TIER_KEYS
from ..tarstream import member, tar_stream
from .base import Strategy, counted

__all__ = [
    "CONFIG_SERVICE",
    "ConfigStrategy",
    "MIN_SECRET_LENGTH",
    "redact_env_text",
    "redact_yaml_text",
]

#: The service name records and tags of configuration backups carry; no
#: real service may take it (``stacks.schema.keys.RESERVED_SERVICE_NAMES``).
CONFIG_SERVICE = "config"
ARCHIVE_NAME = "config.tar"
MIN_SECRET_LENGTH = 4
# What a secret value found by the net becomes: a plain word, so a YAML or
# env file stays parseable wherever the value stood ("********" unquoted
# would be a YAML alias).
SCRUBBED = b"REDACTED"
_SKIPPED_DIRS = {"__pycache__", ".git"}

# ``  KEY: value  # comment`` (or ``- KEY: value``); the key may be quoted.
_YAML_LINE = re.compile(
    r"^(?P<lead>\s*(?:-\s+)?)(?P<q>[\"']?)(?P<key>[A-Za-z_][\w.-]*)(?P=q)"
    r"(?P<sep>\s*:\s+|\s*:$)(?P<value>.*?)(?P<comment>\s+#.*)?$"
)
# ``- NAME=value`` (Compose's list form of environment).
_YAML_ITEM = re.compile(
    r"^(?P<lead>\s*-\s+)(?P<q>[\"']?)(?P<key>[A-Za-z_]\w*)=(?P<value>.*?)(?P=q)\s*$"
)
_ENV_LINE = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_]\w*)=(?P<value>.*)$"
)
_BLOCK = re.compile(r"^[|>][+-]?\d*$")


def _unquote(text):
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1], text[0]
    return text, ""


def _redacted(value, quote):
    if not value:
        return None
    hidden = redact_value(value)
    if hidden == value:
        return None
    return f'"{hidden}"' if quote or hidden.startswith(("$", "*")) else hidden


def redact_yaml_text(text):
    """Return ``(text, count)``: YAML with the values of secret keys hidden.

    Line by line, so comments and layout survive; a block scalar (``KEY:
    |``) under a secret key has its lines hidden.
    """
    out, count = [], 0
    block_indent = None
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None:
            if line.strip() and indent > block_indent:
                out.append(" " * indent + REDACTED)
                continue
            block_indent = None
        match = _YAML_LINE.match(line)
        if match and is_secret_name(match["key"]) and match["value"].strip():
            value = match["value"].strip()
            if _BLOCK.match(value):
                block_indent = indent
                out.append(line)
                count += 1
                continue
            anchor = ""
            if value.startswith("&"):
                anchor, _, value = value.partition(" ")
                anchor += " "
            if not value.startswith(("*", "{", "[")):
                inner, quote = _unquote(value)
                hidden = _redacted(inner, quote)
                if hidden is not None:
                    out.append(
                        f"{match['lead']}{match['q']}{match['key']}{match['q']}"
                        f"{match['sep']}{anchor}{hidden}{match['comment'] or ''}"
                    )
                    count += 1
                    continue
        item = _YAML_ITEM.match(line)
        if item and is_secret_name(item["key"]):
            hidden = redact_value(item["value"])
            if hidden != item["value"]:
                out.append(f'{item["lead"]}"{item["key"]}={hidden}"')
                count += 1
                continue
        out.append(line)
    return "\n".join(out), count


def redact_env_text(text):
    """Return ``(text, count)``: an env file with secret values hidden."""
    out, count = [], 0
    for line in text.split("\n"):
        match = _ENV_LINE.match(line)
        if match and is_secret_name(match["key"]) and match["value"].strip():
            inner, quote = _unquote(match["value"].strip())
            hidden = redact_value(inner) if inner else inner
            if hidden != inner:
                out.append(f"{match['lead']}{match['key']}={quote}{hidden}{quote}")
                count += 1
                continue
        out.append(line)
    return "\n".join(out), count


def _is_env_file(path):
    return path.name.endswith(".env") or ".env." in path.name


class ConfigStrategy(Strategy):
    """The environment's rendered compose files and configuration folder."""

    name = "config"
    filename = ARCHIVE_NAME

    def __init__(self, context, name="config"):
        super().__init__(context)
        self.name = name
        self.root = Path(settings.PORTAL_CONFIG_DIR)

    # -- what is secret -------------------------------------------------------

    def secret_values(self):
        """Return the values to hide, longest first (never logged)."""
        environment = self.context.environment
        environ = environ_for(environment)
        names = {name for name in environ if is_secret_name(name)}
        for service in Service.objects.select_related("stack"):
            variables = effective_service(service, environment).get("environment")
            for key, value in (variables or {}).items():
                if is_secret_name(key):
                    names.update(references(value))
        policy = BackupPolicy.objects.filter(environment=environment).first()
        for tier in StorageTier.objects.filter(name__in=policy.tiers if policy else []):
            for key in SECRET_TIER_KEYS:
                names.update(references((tier.settings or {}).get(key) or ""))
        values = {environ[name] for name in names if name in environ}
        return sorted(
            (v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True
        )

    # -- the files ----------------------------------------------------------------

    def files(self):
        """Yield ``(archive path, bytes, mtime, redactions)``, one file at a time."""
        environment = self.context.environment
        secrets = [value.encode() for value in self.secret_values()]
        for stack in Stack.objects.order_by("order", "name"):
            self.context.check_cancel()
            text, count = redact_yaml_text(
                render_compose(stack_plan(environment, stack))
            )
            data, more = _scrub(text.encode(), secrets)
            yield f"compose/compose.{stack.name}.yml", data, None, count + more
        for path in self._config_paths():
            raw = path.read_bytes()
            if raw.startswith(b"\x7fELF"):
                continue
            count = 0
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None and path.suffix in (".yaml", ".yml"):
                text, count = redact_yaml_text(text)
                raw = text.encode()
            elif text is not None and _is_env_file(path):
                text, count = redact_env_text(text)
                raw = text.encode()
            data, more = _scrub(raw, secrets)
            relative = path.relative_to(self.root).as_posix()
            yield f"configs/{relative}", data, path.stat().st_mtime, count + more

    def _config_paths(self):
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.rglob("*")):
            parts = set(path.relative_to(self.root).parts)
            if parts & _SKIPPED_DIRS or path.suffix == ".pyc" or not path.is_file():
                continue
            found.append(path)
        return found

    # -- manifest and data ----------------------------------------------------------

    def manifest(self):
        checksums, total, redacted = {}, 0, 0
        for name, data, _mtime, count in self.files():
            checksums[name] = hashlib.sha256(data).hexdigest()
            total += len(data)
            redacted += count
        return {
            "engine": "config",
            "files": len(checksums),
            "bytes": total,
            "stacks": list(
                Stack.objects.order_by("order", "name").values_list("name", flat=True)
            ),
            "redacted": redacted,
            "checksums": checksums,
            "file": ARCHIVE_NAME,
        }

    def backup(self, repository, *, tags, host):
        context = self.context
        members = (
            (member(name, len(data), mtime=mtime), [data])
            for name, data, mtime, _count in self.files()
        )
        return repository.backup_stream(
            counted(
                tar_stream(members), context.check_cancel, on_bytes=context.progress
            ),
            filename=ARCHIVE_NAME,
            tags=tags,
            host=host,
        )


def _scrub(data, secrets):
    """Replace every secret value left in ``data``; return (data, count)."""
    count = 0
    for secret in secrets:
        found = data.count(secret)
        if found:
            data = data.replace(secret, SCRUBBED)
            count += found
    return data, count

"""Checks of ``retention-policies.yaml``.

Imported by ``import_configs`` as a companion of ``stacks.yaml``
(registered in :mod:`retention.apps`); the admin's retention pages go
through the same checks on the database's rows
(:func:`retention.config.issues`). Besides known keys, environment,
service and volume names and YAML booleans, every item must say where its
data is in a way the portal can act on (a table's date column, a Redis key
pattern, a volume and path...) and use a cleanup strategy that is defined
in ``cleanup_strategies`` *and* that the portal runs for that kind of data.
"""

import difflib
import fnmatch
import re

from stacks.schema.files import FileChecker
from stacks.secrets import is_reference

from .choices import (
    FILE_STRATEGIES,
    GROUP_KINDS,
    KIND_STRATEGIES,
    SERVICE_VOLUME_STRATEGIES,
    ItemKind,
)

__all__ = [
    "ENVIRONMENT_KEYS",
    "GLOBAL_KEYS",
    "ITEM_KEYS",
    "RETENTION_TOP_KEYS",
    "SERVICE_KEYS",
    "VOLUME_KEYS",
    "check_retention_policies",
    "relative_path",
]

RETENTION_TOP_KEYS = (
    "global",
    "environments",
    "services",
    "volumes",
    "cleanup_strategies",
    "backup_strategies",
    "notifications",
)
GLOBAL_KEYS = (
    "default_retention_days",
    "cleanup_schedule",
    "dry_run",
    "backup_before_cleanup",
    "notifications",
    "schedule_grace_minutes",
)
NOTIFICATION_KEYS = ("enabled", "email", "webhook_url")
ENVIRONMENT_KEYS = (
    "default_retention_days",
    "cleanup_schedule",
    "dry_run",
    "backup_before_cleanup",
)
SERVICE_KEYS = (
    "retention_days",
    "cleanup_strategy",
    "backup_retention_days",
    "port",
    "api_key",
    "password",
    "database",
)
#: Keys every item takes, then the keys of each kind saying where its data is.
COMMON_ITEM_KEYS = ("retention_days", "cleanup_strategy")
ITEM_KEYS = {
    ItemKind.ROWS: ("table", "schema", "date_column", "batch_size"),
    ItemKind.KEYS: ("pattern", "database", "batch_size"),
    ItemKind.COLLECTIONS: ("collection", "pattern"),
    ItemKind.OBJECTS: ("bucket", "prefix"),
    ItemKind.INDICES: ("pattern",),
    ItemKind.FILES: ("volume", "path", "patterns"),
    ItemKind.METRICS: (),
}
VOLUME_KEYS = ("retention_days", "cleanup_strategy", "backup_retention_days")
NOTIFICATION_EVENTS = ("cleanup_started", "cleanup_completed", "cleanup_failed")
# Strategies of a volumes entry: file ages, the service's own, or vacuum.
VOLUME_STRATEGIES = (*FILE_STRATEGIES, *SERVICE_VOLUME_STRATEGIES, "vacuum_and_analyze")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SECRET_KEYS = ("api_key", "password")
_STRING_BOOLEANS = {"true", "false", "yes", "no"}


def relative_path(value):
    """Return ``value`` as a clean path inside a volume, or None if it is not
    one (``..`` parts, a NUL)."""
    text = str(value).strip().strip("/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\x00" in text:
        return None
    return "/".join(parts)


def check_retention_policies(doc, file, *, environments, volumes, services=None):
    """Return the issues of a loaded ``retention-policies.yaml``.

    Args:
        environments: environment names and aliases of ``stacks.yaml``.
        volumes: volume names of ``stacks.yaml``.
        services: its service names (None: not checked).
    """
    checker = FileChecker(file, environments)
    if not checker.top(doc, RETENTION_TOP_KEYS):
        return checker.errors
    checker.booleans(doc, "")
    strategies = checker.section(doc, "cleanup_strategies")
    _check_global(checker, checker.section(doc, "global"))
    for name, values in checker.environment_names(doc, "environments").items():
        if isinstance(values, dict):
            path = f"environments.{name}"
            checker.keys(values, path, ENVIRONMENT_KEYS)
            checker.days(
                values, "default_retention_days", f"{path}.default_retention_days"
            )
            checker.schedule(values, "cleanup_schedule", f"{path}.cleanup_schedule")
            _flags(checker, values, path, ("dry_run", "backup_before_cleanup"))
    section = checker.section(doc, "services")
    for name, values in section.items():
        _check_service(checker, section, name, values, strategies, services, volumes)
    section = checker.section(doc, "volumes")
    for name, values in section.items():
        _check_volume(checker, section, name, values, strategies, volumes)
    for name, values in strategies.items():
        if not isinstance(values, dict) or not values.get("command"):
            checker.error(
                strategies,
                name,
                f"cleanup_strategies.{name}",
                "a cleanup strategy needs a description and a command",
            )
    notifications = checker.section(doc, "notifications")
    for event, values in notifications.items():
        path = f"notifications.{event}"
        if event not in NOTIFICATION_EVENTS:
            checker.unknown(
                notifications, event, path, "notification", event, NOTIFICATION_EVENTS
            )
        elif not isinstance(values, dict):
            checker.error(notifications, event, path, "expected a mapping")
        else:
            checker.keys(values, path, ("subject", "template"))
    return checker.errors


def _check_global(checker, glob):
    checker.keys(glob, "global", GLOBAL_KEYS)
    checker.days(glob, "default_retention_days", "global.default_retention_days")
    checker.schedule(glob, "cleanup_schedule", "global.cleanup_schedule")
    _flags(checker, glob, "global", ("dry_run", "backup_before_cleanup"))
    grace = glob.get("schedule_grace_minutes")
    if grace is not None and (
        isinstance(grace, bool) or not isinstance(grace, int) or grace < 1
    ):
        checker.error(
            glob,
            "schedule_grace_minutes",
            "global.schedule_grace_minutes",
            f"expected a number of minutes above 0, got {grace!r}",
        )
    notifications = checker.section(glob, "notifications")
    checker.keys(notifications, "global.notifications", NOTIFICATION_KEYS)
    _flags(checker, notifications, "global.notifications", ("enabled",))


def _flags(checker, container, path, keys):
    for key in keys:
        value = container.get(key)
        if isinstance(value, str) and value.strip().lower() in _STRING_BOOLEANS:
            continue  # FileChecker.booleans says how to write it
        if value is not None and not isinstance(value, bool):
            checker.error(
                container,
                key,
                f"{path}.{key}",
                f"expected true or false, got {value!r}",
            )


def _strategy(checker, container, key, path, strategies, allowed, what):
    """Check the strategy named at ``container[key]``; return it or None."""
    name = container.get(key)
    if name is None:
        return None
    if name not in strategies:
        close = difflib.get_close_matches(str(name), list(strategies), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        checker.error(
            container,
            key,
            path,
            f"cleanup strategy {name!r} is not defined in cleanup_strategies{hint}",
        )
        return None
    if allowed is not None and name not in allowed:
        checker.error(
            container,
            key,
            path,
            f"cleanup strategy {name!r} does not apply to {what} (the portal runs "
            f"{', '.join(allowed)} there)",
        )
        return None
    return name


def _check_service(checker, section, name, values, strategies, services, volumes):
    path = f"services.{name}"
    if not isinstance(values, dict):
        checker.error(section, name, path, "expected a mapping")
        return
    known = services is None or name in services
    for key in ("retention_days", "backup_retention_days"):
        checker.days(values, key, f"{path}.{key}")
    service_strategy = _strategy(
        checker,
        values,
        "cleanup_strategy",
        f"{path}.cleanup_strategy",
        strategies,
        None,
        "",
    )
    port = values.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        checker.error(values, "port", f"{path}.port", f"expected a port, got {port!r}")
    for key in _SECRET_KEYS:
        value = values.get(key)
        if value is not None and not is_reference(value, allow_default=False):
            checker.error(
                values,
                key,
                f"{path}.{key}",
                "write a ${VAR} reference: secrets never go in the file",
            )
    database = values.get("database")
    if database is not None and not (
        isinstance(database, str) and _IDENTIFIER.fullmatch(database)
    ):
        checker.error(
            values,
            "database",
            f"{path}.database",
            f"expected a PostgreSQL database name, got {database!r}",
        )
    unknown_reported = False
    for key, items in values.items():
        if key in SERVICE_KEYS:
            continue
        if key not in GROUP_KINDS:
            close = difflib.get_close_matches(
                str(key), [*SERVICE_KEYS, *GROUP_KINDS], n=1
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            checker.error(
                values,
                key,
                f"{path}.{key}",
                f"unknown key {key!r}{hint}; items are listed under one of: "
                f"{', '.join(GROUP_KINDS)}",
            )
            continue
        if not isinstance(items, dict):
            checker.error(values, key, f"{path}.{key}", "expected a mapping of items")
            continue
        kind = GROUP_KINDS[key]
        if not known and kind != ItemKind.FILES and not unknown_reported:
            # Files are found by their volume; everything else is asked of
            # the service's running container.
            checker.unknown(section, name, path, "service", name, services)
            unknown_reported = True
        for item, settings in items.items():
            ipath = f"{path}.{key}.{item}"
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                checker.error(items, item, ipath, "expected a mapping")
                continue
            _check_item(
                checker,
                items,
                item,
                settings,
                ipath,
                kind,
                service_strategy,
                strategies,
                known,
                volumes,
            )


def _check_item(
    checker,
    items,
    item,
    settings,
    path,
    kind,
    service_strategy,
    strategies,
    known_service,
    volumes,
):
    checker.keys(settings, path, (*COMMON_ITEM_KEYS, *ITEM_KEYS[kind]))
    checker.days(settings, "retention_days", f"{path}.retention_days")
    allowed = KIND_STRATEGIES[kind]
    own = _strategy(
        checker,
        settings,
        "cleanup_strategy",
        f"{path}.cleanup_strategy",
        strategies,
        allowed,
        f"{kind.label.lower()}",
    )
    if (
        own is None
        and "cleanup_strategy" not in settings
        and service_strategy
        and service_strategy not in allowed
    ):
        checker.error(
            items,
            item,
            path,
            f"the service's cleanup strategy {service_strategy!r} does not apply to "
            f"{kind.label.lower()}; give the item a cleanup_strategy of its own "
            f"({', '.join(allowed)})",
        )
    batch = settings.get("batch_size")
    if batch is not None and (
        isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
    ):
        checker.error(
            settings,
            "batch_size",
            f"{path}.batch_size",
            f"expected a positive number, got {batch!r}",
        )
    if kind == ItemKind.ROWS:
        for key in ("table", "schema", "date_column"):
            value = settings.get(key, item if key == "table" else None)
            if value is not None and not (
                isinstance(value, str) and _IDENTIFIER.fullmatch(value)
            ):
                checker.error(
                    settings if key in settings else items,
                    key if key in settings else item,
                    f"{path}.{key}",
                    f"{value!r} is not a table or column name (letters, digits, _)",
                )
    elif kind == ItemKind.KEYS:
        pattern = settings.get("pattern")
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            checker.error(
                settings, "pattern", f"{path}.pattern", "expected a key pattern"
            )
        database = settings.get("database")
        if database is not None and (
            isinstance(database, bool) or not isinstance(database, int) or database < 0
        ):
            checker.error(
                settings,
                "database",
                f"{path}.database",
                f"expected a Redis database number, got {database!r}",
            )
    elif kind == ItemKind.OBJECTS:
        bucket = settings.get("bucket", item)
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
            checker.error(
                settings if "bucket" in settings else items,
                "bucket" if "bucket" in settings else item,
                f"{path}.bucket",
                f"{bucket!r} is not a bucket name",
            )
        prefix = settings.get("prefix")
        if prefix is not None and not isinstance(prefix, str):
            checker.error(settings, "prefix", f"{path}.prefix", "expected a prefix")
    elif kind in (ItemKind.COLLECTIONS, ItemKind.INDICES):
        for key in ("collection", "pattern"):
            value = settings.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                checker.error(settings, key, f"{path}.{key}", "expected a name")
    elif kind == ItemKind.FILES:
        _check_files(checker, items, item, settings, path, known_service, volumes)


def _check_files(checker, items, item, settings, path, known_service, volumes):
    volume = settings.get("volume")
    if volume is not None and volume not in volumes:
        checker.unknown(settings, "volume", f"{path}.volume", "volume", volume, volumes)
    if volume is None and not known_service:
        checker.error(
            items,
            item,
            f"{path}.volume",
            "this service is not in stacks.yaml: name the volume its files are in "
            "(volume: <name>)",
        )
    value = settings.get("path")
    if value is not None and (
        not isinstance(value, str) or relative_path(value) is None
    ):
        checker.error(
            settings,
            "path",
            f"{path}.path",
            f"{value!r} is not a path inside the volume (no '..')",
        )
    patterns = settings.get("patterns")
    if patterns is not None:
        listed = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(listed, list) or not all(
            isinstance(p, str) and p and "/" not in p for p in listed
        ):
            checker.error(
                settings,
                "patterns",
                f"{path}.patterns",
                "expected file name patterns such as '*.log' (no '/')",
            )
        else:
            for pattern in listed:
                # fnmatch accepts anything; a pattern must at least translate.
                fnmatch.translate(pattern)


def _check_volume(checker, section, name, values, strategies, volumes):
    path = f"volumes.{name}"
    if name not in volumes:
        close = difflib.get_close_matches(str(name), sorted(volumes), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        checker.error(section, name, path, f"unknown volume {name!r}{hint}")
    if not isinstance(values, dict):
        checker.error(section, name, path, "expected a mapping")
        return
    checker.keys(values, path, VOLUME_KEYS)
    for key in ("retention_days", "backup_retention_days"):
        checker.days(values, key, f"{path}.{key}")
    _strategy(
        checker,
        values,
        "cleanup_strategy",
        f"{path}.cleanup_strategy",
        strategies,
        VOLUME_STRATEGIES,
        "a volume",
    )

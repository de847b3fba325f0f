"""Checks of ``retention-policies.yaml`` and ``backup-strategies.yaml``.

These files are not imported into models yet; ``import_configs`` only makes
sure they parse, use known top-level keys and environment names, refer to
strategies and tiers they define, and write booleans as YAML booleans (the
seed compared the string ``"true"`` with Python's ``True``).
"""

import difflib
import re

from .loader import Issue, line_of

__all__ = [
    "BACKUP_TOP_KEYS",
    "RETENTION_TOP_KEYS",
    "check_backup_strategies",
    "check_retention_policies",
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
BACKUP_TOP_KEYS = (
    "global",
    "environments",
    "services",
    "storage_tiers",
    "verification",
    "notifications",
)
_STRING_BOOLEANS = {"true", "false", "yes", "no"}
_CRON_RE = re.compile(r"^\S+(\s+\S+){4}$")


class _Checker:
    def __init__(self, file, environments):
        self.file = file
        self.environments = environments
        self.errors = []

    def error(self, container, key, path, message):
        self.errors.append(Issue(self.file, line_of(container, key), path, message))

    def top(self, doc, allowed):
        if not isinstance(doc, dict):
            self.errors.append(
                Issue(self.file, 1, "", "expected a mapping at the top level")
            )
            return False
        for key in doc:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(doc, key, str(key), f"unknown key {key!r}{hint}")
        return True

    def section(self, doc, key):
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(doc, key, key, "expected a mapping")
            return {}
        return value

    def environment_names(self, doc, key):
        section = self.section(doc, key)
        for name in section:
            self.environment_name(section, name, f"{key}.{name}", name)
        return section

    def environment_name(self, container, key, path, name):
        if name not in self.environments:
            close = difflib.get_close_matches(str(name), sorted(self.environments), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(container, key, path, f"unknown environment {name!r}{hint}")

    def booleans(self, value, path, container=None, key=None):
        """Report string values that read as booleans, anywhere in ``value``."""
        if isinstance(value, dict):
            for k, v in value.items():
                self.booleans(v, f"{path}.{k}" if path else str(k), value, k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.booleans(v, path, value, i)
        elif isinstance(value, str) and value.strip().lower() in _STRING_BOOLEANS:
            self.error(
                container,
                key,
                path,
                f"{value!r} is a string; write {value.strip().lower()} without quotes "
                "for a boolean",
            )

    def days(self, container, key, path):
        value = container.get(key)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(
                container, key, path, f"expected a number of days, got {value!r}"
            )

    def schedule(self, container, key, path):
        value = container.get(key)
        if value is None:
            return
        if not isinstance(value, str) or not _CRON_RE.match(value.strip()):
            self.error(
                container, key, path, f"{value!r} is not a five-field cron schedule"
            )


def check_retention_policies(doc, file, *, environments, volumes):
    """Return the issues of a loaded ``retention-policies.yaml``.

    Args:
        environments: environment names and aliases of ``stacks.yaml``.
        volumes: volume names of ``stacks.yaml``.
    """
    checker = _Checker(file, environments)
    if not checker.top(doc, RETENTION_TOP_KEYS):
        return checker.errors
    checker.booleans(doc, "")
    glob = checker.section(doc, "global")
    checker.days(glob, "default_retention_days", "global.default_retention_days")
    checker.schedule(glob, "cleanup_schedule", "global.cleanup_schedule")
    envs = checker.environment_names(doc, "environments")
    for name, values in envs.items():
        if isinstance(values, dict):
            path = f"environments.{name}"
            checker.days(
                values, "default_retention_days", f"{path}.default_retention_days"
            )
            checker.schedule(values, "cleanup_schedule", f"{path}.cleanup_schedule")
    strategies = checker.section(doc, "cleanup_strategies")

    def strategy(container, key, path):
        name = container.get(key)
        if name is not None and name not in strategies:
            close = difflib.get_close_matches(str(name), list(strategies), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            checker.error(
                container,
                key,
                path,
                f"cleanup strategy {name!r} is not defined in cleanup_strategies{hint}",
            )

    for name, values in checker.section(doc, "services").items():
        if not isinstance(values, dict):
            checker.error(
                doc["services"], name, f"services.{name}", "expected a mapping"
            )
            continue
        path = f"services.{name}"
        for key in ("retention_days", "backup_retention_days"):
            checker.days(values, key, f"{path}.{key}")
        strategy(values, "cleanup_strategy", f"{path}.cleanup_strategy")
        for group, items in values.items():
            if not isinstance(items, dict):
                continue
            for item, settings in items.items():
                if isinstance(settings, dict):
                    ipath = f"{path}.{group}.{item}"
                    checker.days(settings, "retention_days", f"{ipath}.retention_days")
                    strategy(settings, "cleanup_strategy", f"{ipath}.cleanup_strategy")
    section = checker.section(doc, "volumes")
    for name, values in section.items():
        path = f"volumes.{name}"
        if name not in volumes:
            close = difflib.get_close_matches(str(name), sorted(volumes), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            checker.error(section, name, path, f"unknown volume {name!r}{hint}")
        if isinstance(values, dict):
            for key in ("retention_days", "backup_retention_days"):
                checker.days(values, key, f"{path}.{key}")
            strategy(values, "cleanup_strategy", f"{path}.cleanup_strategy")
    for name, values in strategies.items():
        if not isinstance(values, dict) or not values.get("command"):
            checker.error(
                strategies,
                name,
                f"cleanup_strategies.{name}",
                "a cleanup strategy needs a description and a command",
            )
    return checker.errors


def check_backup_strategies(doc, file, *, environments):
    """Return the issues of a loaded ``backup-strategies.yaml``."""
    checker = _Checker(file, environments)
    if not checker.top(doc, BACKUP_TOP_KEYS):
        return checker.errors
    checker.booleans(doc, "")
    glob = checker.section(doc, "global")
    checker.days(glob, "default_retention_days", "global.default_retention_days")
    checker.schedule(glob, "backup_schedule", "global.backup_schedule")
    tiers = checker.section(doc, "storage_tiers")
    for name, values in checker.environment_names(doc, "environments").items():
        if not isinstance(values, dict):
            continue
        path = f"environments.{name}"
        checker.days(values, "retention_days", f"{path}.retention_days")
        checker.schedule(values, "backup_schedule", f"{path}.backup_schedule")
        listed = values.get("storage_tiers") or []
        for i, tier in enumerate(listed if isinstance(listed, list) else []):
            if tier not in tiers:
                checker.error(
                    listed,
                    i,
                    f"{path}.storage_tiers",
                    f"storage tier {tier!r} is not defined in storage_tiers",
                )
    for name, values in checker.section(doc, "services").items():
        if isinstance(values, dict):
            checker.days(values, "retention_days", f"services.{name}.retention_days")
    restore_test = checker.section(checker.section(doc, "verification"), "restore_test")
    target = restore_test.get("test_environment")
    if target is not None:
        checker.environment_name(
            restore_test,
            "test_environment",
            "verification.restore_test.test_environment",
            target,
        )
    return checker.errors

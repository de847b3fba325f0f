"""Checks of ``retention-policies.yaml``.

Imported by ``import_configs`` as a companion of ``stacks.yaml``
(registered in :mod:`retention.apps`): the file parses, uses known keys,
environment and volume names, refers to the cleanup strategies it defines
and writes booleans as YAML booleans.
"""

import difflib

from stacks.schema.files import FileChecker

__all__ = ["RETENTION_TOP_KEYS", "check_retention_policies"]

RETENTION_TOP_KEYS = (
    "global",
    "environments",
    "services",
    "volumes",
    "cleanup_strategies",
    "backup_strategies",
    "notifications",
)


def check_retention_policies(doc, file, *, environments, volumes):
    """Return the issues of a loaded ``retention-policies.yaml``.

    Args:
        environments: environment names and aliases of ``stacks.yaml``.
        volumes: volume names of ``stacks.yaml``.
    """
    checker = FileChecker(file, environments)
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

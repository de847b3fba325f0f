"""Checks of ``backup-strategies.yaml``.

Imported by ``import_configs`` as a companion of ``stacks.yaml``
(registered in :mod:`backups.apps`); the admin's backup pages go through
the same checks on the database's rows (:func:`backups.config.issues`).
Besides known keys, environment names and YAML booleans, the file must
name services that exist, storage tiers of a known kind with a location,
methods the portal can run, and repository passwords and cloud credentials
as ``${VAR}`` references, never as values.
"""

from stacks.schema.files import FileChecker
from stacks.secrets import is_reference

from .choices import BackupMethod, TierKind

__all__ = [
    "BACKUP_TOP_KEYS",
    "BACKUP_TYPES",
    "FREQUENCIES",
    "SERVICE_KEYS",
    "STRATEGIES",
    "TIER_KEYS",
    "TIER_LOCATION_KEY",
    "check_backup_strategies",
]

BACKUP_TOP_KEYS = (
    "global",
    "environments",
    "services",
    "storage_tiers",
    "verification",
    "notifications",
)
ENVIRONMENT_KEYS = (
    "backup_schedule",
    "retention_days",
    "backup_types",
    "storage_tiers",
)
#: The seed's backup types: how a run relates to the snapshots before it.
BACKUP_TYPES = ("full", "incremental", "differential")
SERVICE_KEYS = (
    "backup_type",
    "retention_days",
    "backup_frequency",
    "backup_method",
    "compression",
    "encryption",
    "verification",
    "backup_locations",
    "backup_commands",
    "restore_commands",
)
FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
VERIFICATION_KEYS = ("checksum", "restore_test", "integrity", "before_destroy")
RESTORE_TEST_KEYS = (
    "enabled",
    "frequency",
    "schedule",
    "pick",
    "test_environment",
    "test_services",
)
INTEGRITY_KEYS = (
    "enabled",
    "check_frequency",
    "schedule",
    "read_all_within_days",
    "repair_on_error",
)
#: Which record a scheduled restore drill takes.
DRILL_PICKS = ("latest", "random")
#: Where each kind of tier names its location.
TIER_LOCATION_KEY = {
    TierKind.FILESYSTEM: "path",
    TierKind.NFS: "path",
    TierKind.SFTP: "url",
    TierKind.S3: "endpoint",
    TierKind.TAPE: "device",
}
TIER_KEYS = (
    "type",
    "path",
    "url",
    "endpoint",
    "device",
    "bucket",
    "region",
    "max_size",
    "retention_days",
    "compression",
    "encryption",
    "password",
    "access_key",
    "secret_key",
    "identity_file",
    "known_hosts",
    "port",
    "keep",
)
#: Tier keys that hold secrets: only ${VAR} references.
SECRET_TIER_KEYS = ("password", "access_key", "secret_key")
KEEP_KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
#: The strategies (BACKUP_TYPE of ``make backup-service``) of each method,
#: the default first.
STRATEGIES = {
    BackupMethod.PG_DUMP: ("full", "schema", "data"),
    BackupMethod.RDB: ("rdb", "aof"),
    BackupMethod.AOF: ("aof", "rdb"),
    BackupMethod.COLLECTION_BACKUP: ("collection",),
    BackupMethod.MC_MIRROR: ("bucket",),
    BackupMethod.FILESYSTEM: ("volumes",),
    BackupMethod.SNAPSHOT: ("volumes",),
}


def check_backup_strategies(doc, file, *, environments, services=None):
    """Return the issues of a loaded ``backup-strategies.yaml``.

    Args:
        environments: environment names and aliases of ``stacks.yaml``.
        services: its service names (None: not checked).
    """
    checker = FileChecker(file, environments)
    if not checker.top(doc, BACKUP_TOP_KEYS):
        return checker.errors
    checker.booleans(doc, "")
    glob = checker.section(doc, "global")
    checker.days(glob, "default_retention_days", "global.default_retention_days")
    checker.schedule(glob, "backup_schedule", "global.backup_schedule")
    tiers = checker.section(doc, "storage_tiers")
    for name, values in tiers.items():
        _check_tier(checker, tiers, name, values)
    for name, values in checker.environment_names(doc, "environments").items():
        _check_environment(checker, name, values, tiers)
    service_section = checker.section(doc, "services")
    for name, values in service_section.items():
        _check_service(checker, service_section, name, values, services)
    _check_verification(checker, checker.section(doc, "verification"), services)
    return checker.errors


def _check_verification(checker, verification, services):
    checker.keys(verification, "verification", VERIFICATION_KEYS)
    restore_test = checker.section(verification, "restore_test")
    path = "verification.restore_test"
    checker.keys(restore_test, path, RESTORE_TEST_KEYS)
    target = restore_test.get("test_environment")
    if target is not None:
        checker.environment_name(
            restore_test, "test_environment", f"{path}.test_environment", target
        )
    checker.schedule(restore_test, "schedule", f"{path}.schedule")
    pick = restore_test.get("pick")
    if pick is not None and pick not in DRILL_PICKS:
        checker.error(
            restore_test,
            "pick",
            f"{path}.pick",
            f"unknown pick {pick!r} (one of: {', '.join(DRILL_PICKS)})",
        )
    frequency = restore_test.get("frequency")
    if frequency is not None and frequency not in FREQUENCIES:
        checker.error(
            restore_test,
            "frequency",
            f"{path}.frequency",
            f"unknown frequency {frequency!r} (one of: {', '.join(FREQUENCIES)})",
        )
    listed = restore_test.get("test_services")
    if listed is not None:
        if not isinstance(listed, list):
            checker.error(
                restore_test,
                "test_services",
                f"{path}.test_services",
                "expected a list",
            )
        elif services is not None:
            for i, name in enumerate(listed):
                if name not in services:
                    checker.unknown(
                        listed, i, f"{path}.test_services", "service", name, services
                    )
    before = checker.section(verification, "before_destroy")
    checker.keys(before, "verification.before_destroy", ("max_age_hours",))
    hours = before.get("max_age_hours")
    if hours is not None and (
        isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours <= 0
    ):
        checker.error(
            before,
            "max_age_hours",
            "verification.before_destroy.max_age_hours",
            f"expected a number of hours above 0, got {hours!r}",
        )
    integrity = checker.section(verification, "integrity")
    path = "verification.integrity"
    checker.keys(integrity, path, INTEGRITY_KEYS)
    checker.schedule(integrity, "schedule", f"{path}.schedule")
    frequency = integrity.get("check_frequency")
    if frequency is not None and frequency not in FREQUENCIES:
        checker.error(
            integrity,
            "check_frequency",
            f"{path}.check_frequency",
            f"unknown frequency {frequency!r} (one of: {', '.join(FREQUENCIES)})",
        )
    window = integrity.get("read_all_within_days")
    checker.days(integrity, "read_all_within_days", f"{path}.read_all_within_days")
    if isinstance(window, int) and not isinstance(window, bool) and window < 1:
        checker.error(
            integrity,
            "read_all_within_days",
            f"{path}.read_all_within_days",
            "expected at least 1 day",
        )


def _check_tier(checker, tiers, name, values):
    path = f"storage_tiers.{name}"
    if not isinstance(values, dict):
        checker.error(tiers, name, path, "expected a mapping")
        return
    checker.keys(values, path, TIER_KEYS)
    checker.days(values, "retention_days", f"{path}.retention_days")
    kind = values.get("type")
    if kind not in TierKind.values:
        checker.error(
            values,
            "type",
            f"{path}.type",
            f"unknown tier type {kind!r} (one of: {', '.join(TierKind.values)})",
        )
        return
    location = TIER_LOCATION_KEY[TierKind(kind)]
    if not isinstance(values.get(location), str) or not values[location].strip():
        checker.error(
            values,
            location if location in values else "type",
            f"{path}.{location}",
            f"a {kind} tier needs its {location}",
        )
    if kind == TierKind.S3 and not values.get("bucket"):
        checker.error(values, "type", f"{path}.bucket", "an s3 tier needs a bucket")
    if kind == TierKind.SFTP and not str(values.get("url", "")).startswith("sftp:"):
        checker.error(
            values,
            "url",
            f"{path}.url",
            "expected sftp:user@host:/path (restic's sftp repository)",
        )
    for key in SECRET_TIER_KEYS:
        value = values.get(key)
        if value is not None and not is_reference(value, allow_default=False):
            checker.error(
                values,
                key,
                f"{path}.{key}",
                "write a ${VAR} reference: secrets of a repository never go in the "
                "file",
            )
    keep = values.get("keep")
    if keep is not None:
        if not isinstance(keep, dict):
            checker.error(values, "keep", f"{path}.keep", "expected a mapping")
        else:
            checker.keys(keep, f"{path}.keep", KEEP_KEYS)
            for key in keep:
                checker.days(keep, key, f"{path}.keep.{key}")


def _check_environment(checker, name, values, tiers):
    path = f"environments.{name}"
    if not isinstance(values, dict):
        return
    checker.keys(values, path, ENVIRONMENT_KEYS)
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
    if listed and isinstance(listed, list):
        first = tiers.get(listed[0])
        if isinstance(first, dict) and first.get("type") == TierKind.TAPE:
            checker.error(
                listed,
                0,
                f"{path}.storage_tiers",
                "the first tier takes the backups and must be a repository; a "
                "tape tier archives snapshots of the tiers before it",
            )
    types = values.get("backup_types") or []
    for i, kind in enumerate(types if isinstance(types, list) else []):
        if kind not in BACKUP_TYPES:
            checker.error(
                types,
                i,
                f"{path}.backup_types",
                f"unknown backup type {kind!r} (one of: {', '.join(BACKUP_TYPES)})",
            )


def _check_service(checker, section, name, values, services):
    path = f"services.{name}"
    if not isinstance(values, dict):
        checker.error(section, name, path, "expected a mapping")
        return
    if services is not None and name not in services:
        checker.unknown(section, name, path, "service", name, services)
    checker.keys(
        values,
        path,
        SERVICE_KEYS,
        extra_ok=tuple(k for k in values if str(k).endswith("_settings")),
    )
    checker.days(values, "retention_days", f"{path}.retention_days")
    method = values.get("backup_method")
    if method not in BackupMethod.values:
        checker.error(
            values,
            "backup_method" if "backup_method" in values else None,
            f"{path}.backup_method",
            f"unknown backup method {method!r} (one of: "
            f"{', '.join(BackupMethod.values)})",
        )
    frequency = values.get("backup_frequency", "daily")
    if frequency not in FREQUENCIES:
        checker.error(
            values,
            "backup_frequency",
            f"{path}.backup_frequency",
            f"unknown frequency {frequency!r} (one of: {', '.join(FREQUENCIES)})",
        )
    if method == BackupMethod.PG_DUMP:
        settings = values.get("database_settings") or {}
        if isinstance(settings, dict) and settings.get("format", "custom") != "custom":
            checker.error(
                settings,
                "format",
                f"{path}.database_settings.format",
                "only the custom format is taken (pg_dump -Fc: compressed, and "
                "pg_restore can restore single tables)",
            )
        if (
            isinstance(settings, dict)
            and settings.get("schema_only")
            and settings.get("data_only")
        ):
            checker.error(
                settings,
                "data_only",
                f"{path}.database_settings",
                "schema_only and data_only exclude each other",
            )

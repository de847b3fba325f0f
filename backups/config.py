"""``backup-strategies.yaml`` in the database: import, export, checks.

Registered with the import as a companion of ``stacks.yaml``
(:mod:`backups.apps`): ``import_configs`` checks the file with
:func:`backups.schema.check_backup_strategies` and writes it into
:class:`~backups.models.StorageTier`, :class:`~backups.models.BackupPolicy`,
:class:`~backups.models.BackupStrategy` and
:class:`~backups.models.BackupConfigValue` rows, in the same transaction
and report as the stacks file; ``export_configs`` writes the rows back in
the file's shape, and :func:`issues` checks the rows as the import checks
the file (the admin's gate).
"""

from stacks.config.sync import RowSync, json_plain
from stacks.models import Environment, Service

from .choices import TierKind
from .models import BackupConfigValue, BackupPolicy, BackupStrategy, StorageTier
from .schema import TIER_LOCATION_KEY, check_backup_strategies

__all__ = ["BackupSync", "FILENAME", "check", "export_data", "importer", "issues"]

FILENAME = "backup-strategies.yaml"
# Sections kept whole as BackupConfigValue rows.
WHOLE_SECTIONS = ("global", "verification", "notifications")
# The tier fields that are model columns; every other key goes to settings.
_TIER_COLUMNS = ("type", "bucket", "region", "retention_days")


def check(document, file, parsed):
    """Check the file against the stacks file it comes with."""
    return check_backup_strategies(
        document,
        file,
        environments=parsed.environment_names(),
        services=set(parsed.services),
    )


def tier_fields(values):
    """Return the StorageTier fields of a ``storage_tiers`` entry."""
    values = json_plain(values)
    kind = TierKind(values["type"])
    location_key = TIER_LOCATION_KEY[kind]
    return {
        "kind": kind,
        "location": values.get(location_key, ""),
        "bucket": values.get("bucket", ""),
        "region": values.get("region", ""),
        "retention_days": values.get("retention_days", 30),
        "settings": {
            k: v
            for k, v in values.items()
            if k not in _TIER_COLUMNS and k != location_key
        },
    }


def strategy_fields(values):
    """Return the BackupStrategy fields of a ``services`` entry."""
    values = json_plain(values)
    return {
        "backup_type": values.get("backup_type", ""),
        "method": values["backup_method"],
        "frequency": values.get("backup_frequency", "daily"),
        "retention_days": values.get("retention_days"),
        "compression": values.get("compression", True),
        "encryption": values.get("encryption", False),
        "verification": values.get("verification", True),
        "settings": {k: v for k, v in values.items() if k.endswith("_settings")},
        "locations": values.get("backup_locations") or {},
        "commands": values.get("backup_commands") or {},
        "restore_commands": values.get("restore_commands") or {},
    }


class BackupSync(RowSync):
    """Plan and write the rows of ``backup-strategies.yaml``."""

    prune_order = ("backup policy", "backup strategy", "storage tier", "backup config")

    def __init__(self, document, file, parsed, report):
        super().__init__(report)
        self.document = document
        self.file = file
        self.parsed = parsed

    def plan(self):
        doc = self.document
        for key in WHOLE_SECTIONS:
            if key in doc:
                self.upsert(
                    BackupConfigValue,
                    "backup config",
                    key,
                    {"key": key},
                    {"value": json_plain(doc[key])},
                )
        self.missing(
            BackupConfigValue,
            "backup config",
            "key",
            {k for k in WHOLE_SECTIONS if k in doc},
        )
        tiers = doc.get("storage_tiers") or {}
        for order, (name, values) in enumerate(tiers.items()):
            self.upsert(
                StorageTier,
                "storage tier",
                name,
                {"name": name},
                {**tier_fields(values), "order": order},
            )
        self.missing(StorageTier, "storage tier", "name", set(tiers))
        services = doc.get("services") or {}
        for order, (name, values) in enumerate(services.items()):
            self.upsert(
                BackupStrategy,
                "backup strategy",
                name,
                {"service": name},
                {**strategy_fields(values), "order": order},
            )
        self.missing(BackupStrategy, "backup strategy", "service", set(services))
        names = self.parsed.environment_lookup()
        wanted = set()
        for alias, values in (doc.get("environments") or {}).items():
            values = json_plain(values or {})
            name = names[alias]
            wanted.add(name)
            environment = Environment.objects.filter(name=name).first()
            if environment is None:
                # A new environment of this same import: it exists once the
                # stacks file's rows are written, before this file's.
                self.writes.append(
                    lambda name=name, values=values: (
                        BackupPolicy.objects.update_or_create(
                            environment=Environment.objects.get(name=name),
                            defaults=_policy_fields(values),
                        )
                    )
                )
                self.report.add("backup policy", name, "created")
                continue
            self.upsert(
                BackupPolicy,
                "backup policy",
                name,
                {"environment": environment},
                _policy_fields(values),
            )
        for policy in BackupPolicy.objects.select_related("environment"):
            if policy.environment.name not in wanted:
                self.report.add("backup policy", policy.environment.name, "not in file")
                self.prunable.append(("backup policy", policy.environment.name, policy))
        if self.report.prune:
            self.prune()


def _create_policy(name, values):
    BackupPolicy.objects.update_or_create(
        environment=Environment.objects.get(name=name),
        defaults=_policy_fields(values),
    )


def _policy_fields(values):
    return {
        "schedule": values.get("backup_schedule", ""),
        "retention_days": values.get("retention_days"),
        "backup_types": values.get("backup_types") or [],
        "tiers": values.get("storage_tiers") or [],
    }


def importer(document, file, parsed, report, prune):
    """Return the :class:`BackupSync` of a checked file (the companion hook)."""
    return BackupSync(document, file, parsed, report)


def export_data():
    """Return the backup configuration in the database in the file's shape."""
    data = {}
    whole = {c.key: c.value for c in BackupConfigValue.objects.all()}
    if "global" in whole:
        data["global"] = whole["global"]
    environments = {}
    for policy in BackupPolicy.objects.select_related("environment"):
        entry = {}
        if policy.schedule:
            entry["backup_schedule"] = policy.schedule
        if policy.retention_days is not None:
            entry["retention_days"] = policy.retention_days
        entry["backup_types"] = list(policy.backup_types)
        entry["storage_tiers"] = list(policy.tiers)
        environments[policy.environment.name] = entry
    data["environments"] = environments
    services = {}
    for strategy in BackupStrategy.objects.all():
        entry = {}
        if strategy.backup_type:
            entry["backup_type"] = strategy.backup_type
        if strategy.retention_days is not None:
            entry["retention_days"] = strategy.retention_days
        entry["backup_frequency"] = strategy.frequency
        entry["backup_method"] = strategy.method
        entry["compression"] = strategy.compression
        entry["encryption"] = strategy.encryption
        entry["verification"] = strategy.verification
        entry.update(strategy.settings)
        if strategy.locations:
            entry["backup_locations"] = strategy.locations
        if strategy.commands:
            entry["backup_commands"] = strategy.commands
        if strategy.restore_commands:
            entry["restore_commands"] = strategy.restore_commands
        services[strategy.service] = entry
    data["services"] = services
    tiers = {}
    for tier in StorageTier.objects.all():
        entry = {"type": str(tier.kind), TIER_LOCATION_KEY[tier.kind]: tier.location}
        if tier.bucket:
            entry["bucket"] = tier.bucket
        if tier.region:
            entry["region"] = tier.region
        entry["retention_days"] = tier.retention_days
        entry.update(tier.settings)
        tiers[tier.name] = entry
    data["storage_tiers"] = tiers
    for key in ("verification", "notifications"):
        if key in whole:
            data[key] = whole[key]
    return data


def issues():
    """Return the issues the import would find in the database's backup rows."""
    environments = set(Environment.objects.values_list("name", flat=True))
    environments |= set(
        Environment.objects.exclude(alias="").values_list("alias", flat=True)
    )
    services = set(Service.objects.values_list("name", flat=True))
    return check_backup_strategies(
        export_data(),
        "the backup configuration",
        environments=environments,
        services=services,
    )

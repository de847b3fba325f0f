"""``retention-policies.yaml`` in the database: import, export, checks.

Registered with the import as a companion of ``stacks.yaml``
(:mod:`retention.apps`): ``import_configs`` checks the file with
:func:`retention.schema.check_retention_policies` and writes it into
:class:`~retention.models.RetentionSetting`,
:class:`~retention.models.EnvironmentRetention`,
:class:`~retention.models.RetentionPolicy`,
:class:`~retention.models.RetentionItem` and
:class:`~retention.models.VolumeRetention` rows, in the same transaction
and report as the stacks file; ``export_configs`` writes the rows back in
the file's shape, and :func:`issues` checks the rows as the import checks
the file (the admin's gate).
"""

from stacks.config.sync import RowSync, json_plain
from stacks.models import Environment, Service, Volume

from .models import (
    EnvironmentRetention,
    RetentionItem,
    RetentionPolicy,
    RetentionSetting,
    VolumeRetention,
)
from .schema import SERVICE_KEYS, check_retention_policies

__all__ = [
    "FILENAME",
    "RetentionSync",
    "check",
    "export_data",
    "importer",
    "issues",
]

FILENAME = "retention-policies.yaml"
# Sections kept whole as RetentionSetting rows, in the file's order.
WHOLE_SECTIONS = ("global", "cleanup_strategies", "backup_strategies", "notifications")
_POLICY_COLUMNS = ("retention_days", "cleanup_strategy", "backup_retention_days")
_ITEM_COLUMNS = ("retention_days", "cleanup_strategy")


def check(document, file, parsed):
    """Check the file against the stacks file it comes with."""
    return check_retention_policies(
        document,
        file,
        environments=parsed.environment_names(),
        volumes=set(parsed.volumes),
        services=set(parsed.services),
    )


def policy_fields(values):
    """Return the RetentionPolicy fields of a ``services`` entry."""
    values = json_plain(values)
    return {
        "retention_days": values.get("retention_days"),
        "cleanup_strategy": values.get("cleanup_strategy") or "",
        "backup_retention_days": values.get("backup_retention_days"),
        "settings": {
            k: v
            for k, v in values.items()
            if k in SERVICE_KEYS and k not in _POLICY_COLUMNS
        },
    }


def item_fields(values):
    """Return the RetentionItem fields of an item entry."""
    values = json_plain(values or {})
    return {
        "retention_days": values.get("retention_days"),
        "cleanup_strategy": values.get("cleanup_strategy") or "",
        "settings": {k: v for k, v in values.items() if k not in _ITEM_COLUMNS},
    }


def environment_fields(values):
    """Return the EnvironmentRetention fields of an ``environments`` entry."""
    values = json_plain(values or {})
    return {
        "default_retention_days": values.get("default_retention_days"),
        "cleanup_schedule": values.get("cleanup_schedule") or "",
        "dry_run": values.get("dry_run"),
        "backup_before_cleanup": values.get("backup_before_cleanup"),
    }


class RetentionSync(RowSync):
    """Plan and write the rows of ``retention-policies.yaml``."""

    prune_order = (
        "retention item",
        "retention policy",
        "volume retention",
        "environment retention",
        "retention setting",
    )

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
                    RetentionSetting,
                    "retention setting",
                    key,
                    {"key": key},
                    {"value": json_plain(doc[key])},
                )
        self.missing(
            RetentionSetting,
            "retention setting",
            "key",
            {k for k in WHOLE_SECTIONS if k in doc},
        )
        self._plan_environments(doc.get("environments") or {})
        services = doc.get("services") or {}
        wanted_items = set()
        for order, (name, values) in enumerate(services.items()):
            values = values or {}
            policy = self.upsert(
                RetentionPolicy,
                "retention policy",
                name,
                {"service": name},
                {**policy_fields(values), "order": order},
            )
            position = 0
            for group, items in values.items():
                if group in SERVICE_KEYS or not isinstance(items, dict):
                    continue
                for item, settings in items.items():
                    label = f"{name}.{group}.{item}"
                    wanted_items.add(label)
                    self.upsert(
                        RetentionItem,
                        "retention item",
                        label,
                        {"policy": policy, "group": group, "name": str(item)},
                        {**item_fields(settings), "order": position},
                    )
                    position += 1
        for item in RetentionItem.objects.select_related("policy"):
            label = str(item)
            if label not in wanted_items:
                self.report.add("retention item", label, "not in file")
                self.prunable.append(("retention item", label, item))
        self.missing(RetentionPolicy, "retention policy", "service", set(services))
        volumes = doc.get("volumes") or {}
        for order, (name, values) in enumerate(volumes.items()):
            values = json_plain(values or {})
            self.upsert(
                VolumeRetention,
                "volume retention",
                name,
                {"volume": name},
                {
                    "retention_days": values.get("retention_days"),
                    "cleanup_strategy": values.get("cleanup_strategy") or "",
                    "backup_retention_days": values.get("backup_retention_days"),
                    "order": order,
                },
            )
        self.missing(VolumeRetention, "volume retention", "volume", set(volumes))
        if self.report.prune:
            self.prune()

    def _plan_environments(self, section):
        names = self.parsed.environment_lookup()
        wanted = set()
        for alias, values in section.items():
            name = names[alias]
            wanted.add(name)
            fields = environment_fields(values)
            environment = Environment.objects.filter(name=name).first()
            if environment is None:
                # A new environment of this same import: it exists once the
                # stacks file's rows are written, before this file's.
                self.writes.append(
                    lambda name=name, fields=fields: (
                        EnvironmentRetention.objects.update_or_create(
                            environment=Environment.objects.get(name=name),
                            defaults=fields,
                        )
                    )
                )
                self.report.add("environment retention", name, "created")
                continue
            self.upsert(
                EnvironmentRetention,
                "environment retention",
                name,
                {"environment": environment},
                fields,
            )
        for row in EnvironmentRetention.objects.select_related("environment"):
            if row.environment.name not in wanted:
                self.report.add(
                    "environment retention", row.environment.name, "not in file"
                )
                self.prunable.append(
                    ("environment retention", row.environment.name, row)
                )


def importer(document, file, parsed, report, prune):
    """Return the :class:`RetentionSync` of a checked file (the companion hook)."""
    return RetentionSync(document, file, parsed, report)


def export_data():
    """Return the retention configuration in the database in the file's shape."""
    data = {}
    whole = {s.key: s.value for s in RetentionSetting.objects.all()}
    if "global" in whole:
        data["global"] = whole["global"]
    environments = {}
    for row in EnvironmentRetention.objects.select_related("environment"):
        entry = {}
        if row.default_retention_days is not None:
            entry["default_retention_days"] = row.default_retention_days
        if row.cleanup_schedule:
            entry["cleanup_schedule"] = row.cleanup_schedule
        for key in ("dry_run", "backup_before_cleanup"):
            if getattr(row, key) is not None:
                entry[key] = getattr(row, key)
        environments[row.environment.name] = entry
    data["environments"] = environments
    services = {}
    items = {}
    for item in RetentionItem.objects.select_related("policy").order_by(
        "policy_id", "order", "id"
    ):
        items.setdefault(item.policy_id, []).append(item)
    for policy in RetentionPolicy.objects.all():
        entry = {}
        for key in _POLICY_COLUMNS:
            value = getattr(policy, key)
            if value not in (None, ""):
                entry[key] = value
        entry.update(policy.settings or {})
        for item in items.get(policy.pk, []):
            values = {}
            for key in _ITEM_COLUMNS:
                value = getattr(item, key)
                if value not in (None, ""):
                    values[key] = value
            values.update(item.settings or {})
            entry.setdefault(item.group, {})[item.name] = values
        services[policy.service] = entry
    data["services"] = services
    volumes = {}
    for row in VolumeRetention.objects.all():
        entry = {}
        for key in ("retention_days", "cleanup_strategy", "backup_retention_days"):
            value = getattr(row, key)
            if value not in (None, ""):
                entry[key] = value
        volumes[row.volume] = entry
    data["volumes"] = volumes
    for key in ("cleanup_strategies", "backup_strategies", "notifications"):
        if key in whole:
            data[key] = whole[key]
    return data


def issues():
    """Return the issues the import would find in the database's retention rows."""
    environments = set(Environment.objects.values_list("name", flat=True))
    environments |= set(
        Environment.objects.exclude(alias="").values_list("alias", flat=True)
    )
    return check_retention_policies(
        export_data(),
        "the retention configuration",
        environments=environments,
        volumes=set(Volume.objects.values_list("name", flat=True)),
        services=set(Service.objects.values_list("name", flat=True)),
    )

"""Import of the configuration files into the models.

:func:`import_configs` validates ``stacks.yaml`` (and, next to it,
``retention-policies.yaml`` and ``backup-strategies.yaml``), plans what
writing the stacks file into the models changes, then writes it in one
transaction and returns an :class:`ImportReport`. Any error stops the import
before anything is written. Objects that are in the database but no longer
in the file are reported as "not in file" and kept, unless ``prune`` is
given. A dry run is the plan alone: it only reads.
"""

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import router, transaction
from django.db.models import ProtectedError, RestrictedError
from django.db.models.deletion import Collector

from portal.audit import record

from ..models import (
    ConfigValue,
    Environment,
    Network,
    NetworkOverride,
    Service,
    ServiceOverride,
    Stack,
    Volume,
)
from ..schema.keys import ENVIRONMENT_FIELDS, SERVICE_FIELDS
from ..schema.loader import ConfigError, Issue, display_path, load_yaml
from ..schema.parser import parse_stacks
from .companions import companions

__all__ = [
    "ACTIONS",
    "ImportReport",
    "ReportEntry",
    "RowSync",
    "default_stacks_file",
    "import_configs",
    "json_plain",
    "validate_configs",
]

CREATED, UPDATED, UNCHANGED, NOT_IN_FILE, DELETED = (
    "created",
    "updated",
    "unchanged",
    "not in file",
    "deleted",
)
ACTIONS = (CREATED, UPDATED, UNCHANGED, NOT_IN_FILE, DELETED)


@dataclass
class ReportEntry:
    """What the import did to one object."""

    kind: str
    name: str
    action: str
    changes: list = field(default_factory=list)

    def __str__(self):
        text = f"{self.action:<12} {self.kind} {self.name}"
        if self.changes:
            text += f" ({', '.join(self.changes)})"
        return text


@dataclass
class ImportReport:
    """The outcome of an import, one entry per object."""

    file: str
    dry_run: bool = False
    prune: bool = False
    entries: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    checked_files: list = field(default_factory=list)

    def add(self, kind, name, action, changes=()):
        self.entries.append(ReportEntry(kind, name, action, list(changes)))

    def counts(self):
        """Return ``{action: number of objects}`` for every action."""
        counted = Counter(e.action for e in self.entries)
        return {action: counted.get(action, 0) for action in ACTIONS}

    def changed(self):
        """Return whether the import created, updated or deleted anything."""
        counts = self.counts()
        return bool(counts[CREATED] or counts[UPDATED] or counts[DELETED])

    def summary(self):
        """Return the one-line summary printed after the entries."""
        counts = self.counts()
        parts = ", ".join(f"{counts[a]} {a}" for a in ACTIONS)
        text = f"{self.file}: {parts}"
        if self.dry_run:
            text += " (dry run: nothing was written)"
        return text


def default_stacks_file():
    """Return ``<PORTAL_CONFIG_DIR>/stacks.yaml``."""
    return Path(settings.PORTAL_CONFIG_DIR) / "stacks.yaml"


def validate_configs(path=None):
    """Validate the stacks file and its companions; return what was parsed.

    Returns ``(StacksConfig, warnings, checked file names)``.

    Raises:
        ConfigError: with every issue found in all files.
    """
    path = Path(path or default_stacks_file())
    name = display_path(path)
    document, issues = load_yaml(path, name=name)
    if document is None:
        raise ConfigError(issues or [Issue(name, 0, "", "the file is empty")])
    parsed, errors, warnings = parse_stacks(document, name)
    issues.extend(errors)
    project = parsed.config.get("project_name")
    if project and project != settings.PORTAL_PROJECT:
        config = document.get("config") if isinstance(document, dict) else None
        warnings.append(
            Issue(
                name,
                getattr(config, "lines", {}).get("project_name", 0),
                "config.project_name",
                f"{project!r} differs from PORTAL_PROJECT {settings.PORTAL_PROJECT!r}, "
                "which names the Compose projects",
            )
        )
    checked = [name]
    for companion in companions():
        companion_path = path.parent / companion.filename
        if not companion_path.exists():
            continue
        companion_name = display_path(companion_path)
        checked.append(companion_name)
        doc, companion_issues = load_yaml(companion_path, name=companion_name)
        issues.extend(companion_issues)
        if doc is not None:
            issues.extend(companion.check(doc, companion_name, parsed))
            parsed.companions[companion.filename] = (companion_name, doc)
    if issues:
        raise ConfigError(issues)
    return parsed, warnings, checked


def import_configs(path=None, *, dry_run=False, prune=False, user=None):
    """Import ``path`` (default ``configs/stacks.yaml``) into the models.

    The import is planned from the database first, which gives the report;
    a real run then writes the plan, all in one transaction. A dry run stops
    after the plan and executes no write statement, and its report is the
    one a real run would give. An import that created, updated or deleted
    something appends one ``config.imported`` entry to the audit log, by
    ``user`` (None: the system).

    Raises:
        ConfigError: the files have errors, or ``prune`` would delete an
            object still in use; nothing was written.
    """
    parsed, warnings, checked = validate_configs(path)
    report = ImportReport(
        file=checked[0],
        dry_run=dry_run,
        prune=prune,
        warnings=warnings,
        checked_files=checked,
    )
    syncs = [_Sync(parsed, report)]
    for companion in companions():
        if companion.importer is None or companion.filename not in parsed.companions:
            continue
        file, doc = parsed.companions[companion.filename]
        syncs.append(companion.importer(doc, file, parsed, report, prune))
    if dry_run:
        for sync in syncs:
            sync.plan()
        return report
    with transaction.atomic():
        for sync in syncs:
            sync.plan()
        for sync in syncs:
            sync.write()
        if report.changed():
            _audit_import(report, user)
    return report


def _audit_import(report, user):
    changed = [
        str(e) for e in report.entries if e.action in (CREATED, UPDATED, DELETED)
    ]
    record(
        "config.imported",
        actor=user,
        object_repr=report.file,
        data={
            "file": report.file,
            "checked_files": report.checked_files,
            "prune": report.prune,
            "counts": report.counts(),
            # Names and changed attribute names only, never values.
            "changed": changed[:200],
            "changed_total": len(changed),
        },
    )


def json_plain(value):
    """Return a parsed YAML value as plain dicts and lists with string keys,
    the form a JSON field stores (companion files' rows use it)."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_plain(v) for v in value]
    return value


class RowSync:
    """Plan writing rows from a checked file, then write the plan.

    :meth:`plan` only reads: it fills the report and queues each write in
    the order a real import needs (an object before its many-to-many links,
    a row before the rows that refer to it). New objects exist only in
    memory until :meth:`write` saves them; a foreign key to one is resolved
    when it is saved. Subclasses implement :meth:`plan` with the helpers
    below and list the kinds they prune, dependents first, in
    ``prune_order``.
    """

    prune_order = ()

    def __init__(self, report):
        self.report = report
        self.prunable = []
        self.writes = []

    def write(self):
        """Run the writes :meth:`plan` queued, in order."""
        for step in self.writes:
            step()

    def plan(self):
        """Fill the report and queue the writes; read the database only."""
        raise NotImplementedError

    # -- helpers
    def upsert(self, model, kind, name, lookup, values):
        # An object related to one that does not exist yet is new too (and
        # Django refuses unsaved objects in filters).
        obj = None
        if all(getattr(v, "pk", True) is not None for v in lookup.values()):
            obj = model.objects.filter(**lookup).first()
        if obj is None:
            obj = model(**lookup, **values)
            self.writes.append(obj.save)
            self.report.add(kind, name, CREATED)
            return obj
        changes = []
        for attr, value in values.items():
            current = getattr(obj, attr)
            if current != value:
                setattr(obj, attr, value)
                changes.append(attr)
        if changes:
            self.writes.append(obj.save)
            self.report.add(kind, name, UPDATED, changes)
        else:
            self.report.add(kind, name, UNCHANGED)
        return obj

    def set_m2m(self, kind, name, obj, attr, targets):
        # By name: the targets may exist only in memory so far.
        current = set()
        if obj.pk is not None:
            current = set(getattr(obj, attr).values_list("name", flat=True))
        if current == {t.name for t in targets}:
            return
        self.writes.append(lambda: getattr(obj, attr).set(targets))
        # The object's own entry was just added by upsert: amend it.
        for item in reversed(self.report.entries):
            if item.kind == kind and item.name == name:
                if item.action == UNCHANGED:
                    item.action = UPDATED
                if item.action == UPDATED:
                    item.changes.append(attr)
                break

    def missing(self, model, kind, field_name, present):
        for obj in model.objects.exclude(**{f"{field_name}__in": present}):
            name = getattr(obj, field_name)
            self.report.add(kind, name, NOT_IN_FILE)
            self.prunable.append((kind, name, obj))

    def missing_pairs(self, model, kind, other, wanted):
        for obj in model.objects.select_related("environment", other):
            key = (obj.environment.name, getattr(obj, other).name)
            if key not in wanted:
                label = "/".join(key)
                self.report.add(kind, label, NOT_IN_FILE)
                self.prunable.append((kind, label, obj))

    def prune(self):
        """Queue the deletion of what is not in the file, in ``prune_order``."""
        issues = []
        for kind in self.prune_order:
            for item_kind, name, obj in self.prunable:
                if item_kind != kind:
                    continue
                # What delete() would refuse, asked without deleting.
                collector = Collector(using=router.db_for_write(type(obj)), origin=obj)
                try:
                    collector.collect([obj])
                except (ProtectedError, RestrictedError) as exc:
                    issues.append(self.undeletable(kind, name, exc))
                    continue
                self.writes.append(partial(self.delete, kind, name, obj))
                for entry in self.report.entries:
                    if entry.kind == kind and entry.name == name:
                        entry.action = DELETED
        if issues:
            raise ConfigError(issues)

    def delete(self, kind, name, obj):
        try:
            with transaction.atomic():
                obj.delete()
        except (ProtectedError, RestrictedError) as exc:
            # Referenced since the plan was made.
            raise ConfigError([self.undeletable(kind, name, exc)]) from None

    def undeletable(self, kind, name, exc):
        blockers = sorted({str(o) for o in exc.args[1]})[:5]
        return Issue(
            self.report.file,
            0,
            "",
            f"cannot delete {kind} {name}: still referenced by {', '.join(blockers)}",
        )


class _Sync(RowSync):
    """Plan and write ``stacks.yaml``'s rows.

    Besides :class:`RowSync`'s order, aliases are freed before they are
    taken.
    """

    # Overrides first, environments and stacks last: a cascade must not
    # take away an object the report has not named.
    prune_order = (
        "service override",
        "network override",
        "service",
        "volume",
        "network",
        "environment",
        "stack",
        "config",
    )

    def __init__(self, parsed, report):
        super().__init__(report)
        self.parsed = parsed

    def plan(self):
        """Fill the report and queue the writes; read the database only."""
        parsed = self.parsed
        # config
        for key, value in parsed.config.items():
            self.upsert(ConfigValue, "config", key, {"key": key}, {"value": value})
        self.missing(ConfigValue, "config", "key", set(parsed.config))

        # stacks, then their dependencies once all exist
        stacks = {}
        for name, spec in parsed.stacks.items():
            stacks[name] = self.upsert(
                Stack,
                "stack",
                name,
                {"name": name},
                {
                    "description": spec["description"],
                    "environment_variables": spec["environment_variables"],
                    "order": spec["order"],
                },
            )
        for name, spec in parsed.stacks.items():
            self.set_m2m(
                "stack",
                name,
                stacks[name],
                "depends_on",
                [stacks[d] for d in spec["dependencies"]],
            )
        self.missing(Stack, "stack", "name", set(parsed.stacks))

        networks = {}
        for name, spec in parsed.networks.items():
            networks[name] = self.upsert(
                Network,
                "network",
                name,
                {"name": name},
                {
                    "stack": stacks[spec["stack"]],
                    "driver": spec["driver"],
                    "subnet": spec["subnet"],
                    "gateway": spec["gateway"],
                    "internal": spec["internal"],
                },
            )
        self.missing(Network, "network", "name", set(parsed.networks))

        for name, spec in parsed.volumes.items():
            self.upsert(
                Volume,
                "volume",
                name,
                {"name": name},
                {
                    "stack": stacks[spec["stack"]],
                    "driver": spec["driver"],
                    "data_type": spec["data_type"],
                    "description": spec["description"],
                },
            )
        self.missing(Volume, "volume", "name", set(parsed.volumes))

        services = {}
        for name, spec in parsed.services.items():
            values = {f: spec[f] for f in SERVICE_FIELDS}
            values["stack"] = stacks[spec["stack"]]
            services[name] = self.upsert(
                Service, "service", name, {"name": name}, values
            )
        for name, spec in parsed.services.items():
            self.set_m2m(
                "service",
                name,
                services[name],
                "depends_on",
                [services[d] for d in spec["depends_on"]],
            )
        self.missing(Service, "service", "name", set(parsed.services))

        environments = {}
        # Aliases are unique; clear the ones that move first, so a swap of
        # aliases between two environments does not trip the constraint
        # midway. The environments' own saves then set the new aliases.
        moving = {e["alias"]: n for n, e in parsed.environments.items() if e["alias"]}
        for env in Environment.objects.exclude(alias=""):
            if env.alias in moving and moving[env.alias] != env.name:
                self.writes.append(
                    partial(Environment.objects.filter(pk=env.pk).update, alias="")
                )
        for name, spec in parsed.environments.items():
            environments[name] = self.upsert(
                Environment,
                "environment",
                name,
                {"name": name},
                {f: spec[f] for f in ENVIRONMENT_FIELDS},
            )
        self.missing(Environment, "environment", "name", set(parsed.environments))

        wanted = set()
        for env_name, spec in parsed.environments.items():
            for net_name, override in spec["network_overrides"].items():
                label = f"{env_name}/{net_name}"
                wanted.add((env_name, net_name))
                self.upsert(
                    NetworkOverride,
                    "network override",
                    label,
                    {
                        "environment": environments[env_name],
                        "network": networks[net_name],
                    },
                    {"subnet": override["subnet"], "gateway": override["gateway"]},
                )
        self.missing_pairs(NetworkOverride, "network override", "network", wanted)

        wanted = set()
        for env_name, spec in parsed.environments.items():
            for svc_name, override in spec["service_overrides"].items():
                label = f"{env_name}/{svc_name}"
                wanted.add((env_name, svc_name))
                self.upsert(
                    ServiceOverride,
                    "service override",
                    label,
                    {
                        "environment": environments[env_name],
                        "service": services[svc_name],
                    },
                    {"values": override["values"]},
                )
        self.missing_pairs(ServiceOverride, "service override", "service", wanted)

        if self.report.prune:
            self.prune()

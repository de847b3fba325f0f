"""The effective retention of every item in an environment: precedence.

An item's days come from, in order (the first that says wins):

1. the item itself (``services.<svc>.<group>.<item>.retention_days``, or a
   ``volumes.<vol>`` entry's own days);
2. its service (``services.<svc>.retention_days``);
3. the environment (``environments.<env>.default_retention_days``);
4. ``global.default_retention_days`` (30 when the file says nothing).

The strategy the same way: the item's, else the service's when it applies
to that kind of data, else the kind's default. :func:`environment_items`
returns one :class:`ItemPolicy` per item with where each value came from,
which the plan, the page, the admin and ``retention status`` show.

Besides the items of ``services``, there are two derived kinds of item:

- a ``volumes.<vol>`` entry with a file strategy (``delete_old_cache``...)
  is the files of that whole volume, minus the paths other items of the
  same volume name (the more specific path wins);
- a service's ``backup_retention_days`` is the retention of its backup
  snapshots in every repository tier of the environment.
"""

from dataclasses import dataclass, field, replace
from datetime import timedelta

from stacks.config import effective_service
from stacks.models import Service, ServiceOverride, Volume

from .choices import (
    FILE_STRATEGIES,
    GROUP_KINDS,
    KIND_STRATEGIES,
    ItemKind,
    Source,
    default_strategy,
)
from .models import (
    EnvironmentRetention,
    RetentionItem,
    RetentionPolicy,
    RetentionSetting,
    VolumeRetention,
)
from .schema import relative_path

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_GRACE_MINUTES",
    "CleanupSettings",
    "ItemPolicy",
    "cleanup_settings",
    "environment_items",
    "global_settings",
    "service_volumes",
]

#: Days kept when nothing in the file says (the seed's fallback).
DEFAULT_DAYS = 30
#: How late a scheduled cleanup may still start (global.schedule_grace_minutes).
DEFAULT_GRACE_MINUTES = 60


@dataclass(frozen=True)
class ItemPolicy:
    """One item's effective retention in one environment.

    ``key`` names it (``postgres/tables/logs``, ``volumes/vllm_cache``,
    ``postgres/backups``); ``settings`` says where its data is; ``note``
    says why it deletes nothing, when it does not (Prometheus keeps its
    own retention, no named volume...).
    """

    key: str
    service: str
    group: str
    name: str
    kind: str
    strategy: str
    strategy_source: str
    days: int
    source: str
    settings: dict = field(default_factory=dict)
    excludes: tuple = ()
    exclude_names: tuple = ()
    note: str = ""

    @property
    def volume(self):
        return self.settings.get("volume", "")

    @property
    def target(self):
        """Where the data is, in a few words."""
        s = self.settings
        kind = self.kind
        if kind == ItemKind.ROWS:
            table = f"{s.get('schema') or 'public'}.{s.get('table') or self.name}"
            return f"table {table} by {s.get('date_column') or 'created_at'}"
        if kind == ItemKind.KEYS:
            return f"keys {self.pattern} in db {s.get('database') or 0}"
        if kind == ItemKind.COLLECTIONS:
            return f"collections {self.pattern}"
        if kind == ItemKind.OBJECTS:
            bucket = s.get("bucket") or self.name
            prefix = s.get("prefix") or ""
            return f"objects of {bucket}/{prefix}"
        if kind == ItemKind.INDICES:
            return f"indices {self.pattern}"
        if kind == ItemKind.FILES:
            path = s.get("path") or ""
            names = ", ".join(self.patterns) if self.patterns else "all files"
            return f"{names} in volume {self.volume or '?'}:/{path}"
        if kind == ItemKind.SNAPSHOTS:
            return f"backup snapshots of {self.service}"
        return self.name

    @property
    def pattern(self):
        """The name pattern of keys, collections and indices."""
        s = self.settings
        if self.kind == ItemKind.KEYS:
            return s.get("pattern") or f"{self.name}:*"
        if self.kind == ItemKind.COLLECTIONS:
            return s.get("pattern") or s.get("collection") or self.name
        if self.kind == ItemKind.INDICES:
            return s.get("pattern") or f"{self.name}-*"
        return ""

    @property
    def patterns(self):
        value = self.settings.get("patterns") or []
        return [value] if isinstance(value, str) else list(value)

    @property
    def path(self):
        return relative_path(self.settings.get("path") or "") or ""

    @property
    def deletes(self):
        """Whether a real run may delete anything for this item."""
        return not self.note

    def cutoff(self, now):
        """Return the time before which the item's data goes."""
        return now - timedelta(days=self.days)

    def describe_days(self):
        """Return "7 days (item)" and the like: the days and where from."""
        where = {
            Source.ITEM: "the item",
            Source.SERVICE: f"service {self.service}",
            Source.ENVIRONMENT: "the environment's default",
            Source.GLOBAL: "the global default",
        }.get(self.source, self.source)
        return f"{self.days} day{'s' if self.days != 1 else ''} ({where})"

    def plan_entry(self):
        """Return what the plan (and its hash) holds of the item."""
        entry = {
            "key": self.key,
            "service": self.service,
            "kind": str(self.kind),
            "target": self.target,
            "strategy": self.strategy,
            "days": self.days,
            "source": str(self.source),
        }
        if self.excludes:
            entry["excludes"] = list(self.excludes)
        if self.exclude_names:
            entry["exclude_names"] = list(self.exclude_names)
        if self.note:
            entry["note"] = self.note
        return entry


@dataclass(frozen=True)
class CleanupSettings:
    """An environment's cleanup switches and schedule."""

    schedule: str
    schedule_source: str
    dry_run: bool
    backup_before_cleanup: bool
    grace_minutes: int
    default_days: int
    default_source: str


def global_settings():
    """Return the stored ``global`` section (a dict)."""
    row = RetentionSetting.objects.filter(key="global").first()
    return row.value if row is not None and isinstance(row.value, dict) else {}


def cleanup_settings(environment, *, glob=None):
    """Return the :class:`CleanupSettings` of ``environment``."""
    glob = global_settings() if glob is None else glob
    row = EnvironmentRetention.objects.filter(environment=environment).first()

    def pick(name, default):
        own = getattr(row, name, None) if row is not None else None
        if own not in (None, ""):
            return own, Source.ENVIRONMENT
        value = glob.get(name)
        if value not in (None, ""):
            return value, Source.GLOBAL
        return default, Source.GLOBAL

    schedule, schedule_source = pick("cleanup_schedule", "")
    dry_run, _ = pick("dry_run", False)
    backup, _ = pick("backup_before_cleanup", True)
    days, days_source = pick("default_retention_days", DEFAULT_DAYS)
    grace = glob.get("schedule_grace_minutes") or DEFAULT_GRACE_MINUTES
    return CleanupSettings(
        schedule=str(schedule).strip(),
        schedule_source=schedule_source,
        dry_run=bool(dry_run),
        backup_before_cleanup=bool(backup),
        grace_minutes=int(grace),
        default_days=int(days),
        default_source=days_source,
    )


def _named(entries, known):
    found = []
    for entry in entries or []:
        source = str(entry).split(":", 1)[0]
        if source in known and source not in found:
            found.append(source)
    return found


def service_volumes(service, environment):
    """Return the named volumes ``service`` mounts in ``environment``."""
    known = set(Volume.objects.values_list("name", flat=True))
    return _named(effective_service(service, environment).get("volumes"), known)


def _mounts(environment, services):
    """Return {service name: [named volumes it mounts in ``environment``]}
    in two queries (an override's ``volumes`` replaces the service's)."""
    known = set(Volume.objects.values_list("name", flat=True))
    overrides = {
        o.service_id: o.values or {}
        for o in ServiceOverride.objects.filter(environment=environment)
    }
    mounts = {}
    for service in services:
        override = overrides.get(service.pk, {})
        entries = override["volumes"] if "volumes" in override else service.volumes
        mounts[service.name] = _named(entries, known)
    return mounts


def _mounted_by(mounts):
    """Return {volume: [service names mounting it]}."""
    users = {}
    for name, volumes in mounts.items():
        for volume in volumes:
            users.setdefault(volume, []).append(name)
    return users


def _days(own, policy, settings):
    if own is not None:
        return own, Source.ITEM
    if policy is not None and policy.retention_days is not None:
        return policy.retention_days, Source.SERVICE
    return settings.default_days, (
        Source.ENVIRONMENT
        if settings.default_source == Source.ENVIRONMENT
        else Source.GLOBAL
    )


def _strategy(own, policy, kind):
    allowed = KIND_STRATEGIES[kind]
    if own:
        return own, Source.ITEM
    if policy is not None and policy.cleanup_strategy in allowed:
        return policy.cleanup_strategy, Source.SERVICE
    return default_strategy(kind), Source.GLOBAL


def environment_items(environment, *, service=None):
    """Return the :class:`ItemPolicy` of every item in ``environment``.

    ``service`` (a name) keeps that service's items only (the volume items
    of the volumes it mounts included). Items are in the file's order:
    services, their items, their backup snapshots, then volumes.
    """
    settings = cleanup_settings(environment)
    services = {
        s.name: s for s in Service.objects.select_related("stack").order_by("name")
    }
    mounts = _mounts(environment, services.values())
    mounted = _mounted_by(mounts)
    items = []
    vacuum = {
        row.volume
        for row in VolumeRetention.objects.filter(cleanup_strategy="vacuum_and_analyze")
    }
    vacuumed = {name for volume in vacuum for name in mounted.get(volume, [])}
    rows = RetentionItem.objects.select_related("policy").order_by(
        "policy__order", "policy__service", "order", "id"
    )
    by_policy = {}
    for row in rows:
        by_policy.setdefault(row.policy_id, []).append(row)
    for policy in RetentionPolicy.objects.all():
        for row in by_policy.get(policy.pk, []):
            kind = GROUP_KINDS.get(row.group)
            if kind is None:
                continue
            days, source = _days(row.retention_days, policy, settings)
            strategy, strategy_source = _strategy(row.cleanup_strategy, policy, kind)
            item_settings = dict(row.settings or {})
            note = ""
            if kind == ItemKind.ROWS and policy.service in vacuumed:
                item_settings["vacuum"] = True
            if kind == ItemKind.FILES and not item_settings.get("volume"):
                found = mounts.get(policy.service, [])
                if len(found) == 1:
                    item_settings["volume"] = found[0]
                elif not found:
                    note = (
                        f"{policy.service} mounts no named volume here (its files "
                        "are on the host or nowhere): name one with volume:"
                    )
                else:
                    note = (
                        f"{policy.service} mounts several volumes "
                        f"({', '.join(found)}): name one with volume:"
                    )
            if kind == ItemKind.METRICS:
                note = (
                    "Prometheus applies its own retention "
                    "(--storage.tsdb.retention.time); the portal deletes no "
                    "series"
                )
            if kind != ItemKind.FILES and policy.service not in services:
                note = f"no service {policy.service} in stacks.yaml"
            items.append(
                ItemPolicy(
                    key=f"{policy.service}/{row.group}/{row.name}",
                    service=policy.service,
                    group=row.group,
                    name=row.name,
                    kind=kind,
                    strategy=strategy,
                    strategy_source=strategy_source,
                    days=days,
                    source=source,
                    settings=item_settings,
                    note=note,
                )
            )
        if policy.backup_retention_days is not None and policy.service in services:
            items.append(
                ItemPolicy(
                    key=f"{policy.service}/backups",
                    service=policy.service,
                    group="backups",
                    name="backups",
                    kind=ItemKind.SNAPSHOTS,
                    strategy="backup_retention",
                    strategy_source=Source.SERVICE,
                    days=policy.backup_retention_days,
                    source=Source.SERVICE,
                )
            )
    for row in VolumeRetention.objects.all():
        if row.cleanup_strategy not in FILE_STRATEGIES:
            continue
        users = mounted.get(row.volume, [])
        days, source = _days(row.retention_days, None, settings)
        items.append(
            ItemPolicy(
                key=f"volumes/{row.volume}",
                service=users[0] if users else "",
                group="volumes",
                name=row.volume,
                kind=ItemKind.FILES,
                strategy=row.cleanup_strategy,
                strategy_source=Source.ITEM,
                days=days,
                source=source,
                settings={"volume": row.volume},
            )
        )
    items = _with_excludes(items)
    if service is not None:
        items = [
            i
            for i in items
            if i.service == service
            or (i.group == "volumes" and service in mounted.get(i.name, []))
        ]
    return items


def _with_excludes(items):
    """Give every files item what more specific items of its volume take.

    A deeper path is more specific (its subtree is excluded from the
    shallower item); at the same path an item with file name patterns is
    more specific than one without (its patterns are excluded from it). A
    ``volumes`` entry whose whole volume an item already covers (path at
    the root, no patterns) is shadowed and deletes nothing itself.
    """
    files = [i for i in items if i.kind == ItemKind.FILES and i.volume and not i.note]
    ids = {id(i) for i in files}
    result = []
    for item in items:
        if id(item) not in ids:
            result.append(item)
            continue
        others = [o for o in files if o is not item and o.volume == item.volume]
        base = item.path
        if item.group == "volumes":
            covering = [
                o
                for o in others
                if o.group != "volumes" and not o.path and not o.patterns
            ]
            if covering:
                result.append(
                    replace(item, note=f"every file is {covering[0].key}'s to clean")
                )
                continue
        inner = sorted(
            {
                o.path
                for o in others
                if o.path != base and (not base or o.path.startswith(base + "/"))
            }
        )
        names = ()
        if not item.patterns:
            names = tuple(
                sorted({p for o in others if o.path == base for p in o.patterns})
            )
        result.append(replace(item, excludes=tuple(inner), exclude_names=names))
    return result

"""Where an environment's backups stand.

For every backed-up service, strategy and storage tier: the newest good
backup, its age against the allowed age of the service's strategy, and the
failures since it. The backups page, ``manage.py backup status`` and the
``/metrics`` collector all read this one answer.

Which rows are judged: the *scheduled* strategy of each service (the
method's default, which ``backup full`` and cron run) in every tier of the
environment's policy. A service never backed up there is overdue. Other
strategies (a ``schema`` dump taken by hand) are listed with their age but
never called overdue: nothing runs them on a schedule.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone

from portal.choices import OperationStatus
from portal.models import Operation, format_duration

from .choices import ProofStatus, RecordStatus
from .models import (
    BackupPolicy,
    BackupRecord,
    BackupStrategy,
    RepositoryCheck,
    RestoreDrill,
    StorageTier,
)
from .operations import BACKUP_KINDS, backed_up_services, newest_good
from .strategies import default_strategy

__all__ = [
    "BackupState",
    "EnvironmentBackups",
    "RepositoryState",
    "repository_states",
    "backup_states",
    "environment_backups",
    "failed_records",
    "format_age",
]

# The operations the page's "Running" table follows.
PAGE_KINDS = (
    *BACKUP_KINDS,
    "backup.verify",
    "backup.drill",
    "backup.restore",
    "backup.prune",
)
# How many failed records the page lists.
FAILURES_SHOWN = 50


def failed_records():
    """Return the Q of records that failed, or were left running by an
    operation that has ended (shown failed until the next backup of the
    environment marks them so)."""
    abandoned = Q(status=RecordStatus.RUNNING) & (
        Q(operation__isnull=True) | ~Q(operation__status__in=OperationStatus.ACTIVE)
    )
    return Q(status=RecordStatus.FAILED) | abandoned


def format_age(delta):
    """Return a timedelta as ``45 s``, ``12 min``, ``5 h 03 min``, ``2 d 04 h``."""
    if delta is None:
        return ""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 3600:
        return format_duration(delta) if seconds < 60 else f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600:02d} h"


@dataclass
class BackupState:
    """The newest good backup of one service by one strategy in one tier."""

    environment: str
    service: str
    strategy: str
    tier: str
    now: datetime
    record: BackupRecord | None = None
    allowed_age: timedelta | None = None
    scheduled: bool = False
    #: Failed records since the newest good one (all of them when none).
    failures: int = 0
    failures_total: int = 0
    last_failure: datetime | None = None
    sort_key: tuple = ()
    #: The newest backup proven by a restore drill or verified by a check of
    #: its repository (intact, not pruned): what the RPO is judged on.
    assured: BackupRecord | None = None

    @property
    def assured_age(self):
        """How old the newest proven or verified backup is (None: none)."""
        if self.assured is None:
            return None
        return self.now - self.assured.data_read

    @property
    def at_risk(self):
        """Whether the RPO is breached: a scheduled row whose newest proven
        or verified backup is older than allowed, or missing."""
        if not self.scheduled or self.allowed_age is None:
            return False
        return self.assured is None or self.assured_age > self.allowed_age

    @property
    def proof(self):
        """How far the newest good backup is proven: ``proven`` (a restore
        drill passed), ``drill failed``, ``verified``, ``unverified`` or
        ``none``."""
        record = self.record
        if record is None:
            return "none"
        drill = getattr(record, "drill_status", None)
        if drill == ProofStatus.PASSED:
            return "proven"
        if drill == ProofStatus.FAILED:
            return "drill failed"
        return "verified" if record.verified else "unverified"

    def describe_risk(self):
        """Return the RPO breach as one line."""
        what = f"{self.service} {self.strategy} in {self.tier}"
        if self.assured is None:
            return f"{what}: no proven or verified backup"
        return (
            f"{what}: newest proven or verified backup "
            f"{format_age(self.assured_age)} old (allowed {self.allowed_text})"
        )

    @property
    def age(self):
        """How old the newest good backup is (None: there is none)."""
        if self.record is None:
            return None
        return self.now - self.record.data_read

    @property
    def overdue(self):
        """Whether a scheduled backup is older than allowed, or missing."""
        if not self.scheduled or self.allowed_age is None:
            return False
        return self.record is None or self.age > self.allowed_age

    @property
    def state(self):
        """``ok``, ``overdue``, ``never`` (judged) or ``on demand``."""
        if not self.scheduled:
            return "on demand"
        if self.record is None:
            return "never"
        return "overdue" if self.overdue else "ok"

    @property
    def age_text(self):
        return format_age(self.age) if self.record is not None else "never"

    @property
    def allowed_text(self):
        return format_age(self.allowed_age)

    def describe(self):
        """Return the row as one line: what, where, and how it stands."""
        what = f"{self.service} {self.strategy} in {self.tier}"
        if self.record is None:
            return f"{what}: never backed up"
        return (
            f"{what}: newest good backup {self.age_text} old "
            f"(allowed {self.allowed_text})"
        )


@dataclass
class RepositoryState:
    """How one repository of an environment stands in its verification.

    ``last`` is the newest finished check, ``last_passed`` the newest that
    passed; the ledger (re-read share) is ``last``'s; ``damaged`` counts the
    records of this repository a check found damaged.
    """

    tier: object
    last: RepositoryCheck | None = None
    last_passed: RepositoryCheck | None = None
    damaged: int = 0

    @property
    def coverage(self):
        return self.last.coverage if self.last is not None else None

    @property
    def state(self):
        """``never checked``, ``passed``, ``damaged`` or ``error``."""
        if self.last is None:
            return "never checked"
        if self.last.status == ProofStatus.FAILED or self.damaged:
            return "damaged"
        return str(self.last.status)


def repository_states(environment, policy=None):
    """Return a :class:`RepositoryState` per repository tier of the
    environment's policy, in the policy's order (four queries, whatever the
    number of tiers and checks)."""
    policy = policy or BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        return []
    tiers = {
        t.name: t
        for t in StorageTier.objects.filter(name__in=policy.tiers)
        if t.is_repository
    }
    states = {
        tiers[name].pk: RepositoryState(tier=tiers[name])
        for name in policy.tiers
        if name in tiers
    }
    checks = RepositoryCheck.objects.filter(
        environment=environment, tier_id__in=states
    ).exclude(status=ProofStatus.RUNNING)
    for check in _newest_per_tier(checks).select_related("operation"):
        states[check.tier_id].last = check
    for check in _newest_per_tier(checks.filter(status=ProofStatus.PASSED)):
        states[check.tier_id].last_passed = check
    damaged = (
        BackupRecord.objects.filter(
            environment=environment,
            tier_id__in=states,
            damaged__isnull=False,
            pruned__isnull=True,
        )
        .values("tier_id")
        .annotate(n=Count("id"))
    )
    for row in damaged:
        states[row["tier_id"]].damaged = row["n"]
    return list(states.values())


def _newest_per_tier(checks):
    return checks.annotate(
        rank=Window(
            RowNumber(),
            partition_by=[F("tier_id")],
            order_by=[F("created").desc(), F("id").desc()],
        )
    ).filter(rank=1)


@dataclass
class EnvironmentBackups:
    """Everything the backups page shows of one environment."""

    environment: object
    policy: object
    rows: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    running: list = field(default_factory=list)
    repositories: list = field(default_factory=list)

    @property
    def overdue(self):
        return [row for row in self.rows if row.overdue]

    @property
    def at_risk(self):
        return [row for row in self.rows if row.at_risk]


def backup_states(environments, *, now=None):
    """Return the :class:`BackupState` rows of ``environments``, in order.

    A handful of queries whatever the number of records: the newest good
    record of each (environment, service, strategy, tier) is picked by a
    window function, failures are counted by the database.
    """
    now = now or timezone.now()
    environments = list(environments)
    if not environments:
        return []
    services = backed_up_services()
    service_order = {s.name: i for i, s in enumerate(services)}
    strategies = {s.service: s for s in BackupStrategy.objects.all()}
    tiers = {t.name: t for t in StorageTier.objects.all()}
    policies = {
        p.environment_id: p
        for p in BackupPolicy.objects.filter(environment__in=environments)
    }
    by_id = {e.pk: e for e in environments}
    rows = {}

    def row(env_id, service, strategy, tier_name):
        key = (env_id, service, strategy, tier_name)
        if key not in rows:
            strategy_row = strategies.get(service)
            default = default_strategy(strategy_row.method) if strategy_row else None
            policy = policies.get(env_id)
            tier = tiers.get(tier_name)
            tier_rank = (
                policy.tiers.index(tier_name)
                if policy and tier_name in policy.tiers
                else len(tiers) + (tier.order if tier else 0)
            )
            rows[key] = BackupState(
                environment=by_id[env_id].name,
                service=service,
                strategy=strategy,
                tier=tier_name,
                now=now,
                allowed_age=strategy_row.allowed_age if strategy_row else None,
                scheduled=bool(
                    strategy == default and policy and tier_name in policy.tiers
                ),
                sort_key=(
                    by_id[env_id].order,
                    by_id[env_id].name,
                    service_order.get(service, len(service_order)),
                    service,
                    strategy != default,
                    strategy,
                    tier_rank,
                ),
            )
        return rows[key]

    # What is expected: the scheduled strategy of every service, every tier.
    for env_id, policy in policies.items():
        for service in services:
            strategy_row = strategies[service.name]
            for tier_name in policy.tiers:
                row(
                    env_id,
                    service.name,
                    default_strategy(strategy_row.method),
                    tier_name,
                )

    records = BackupRecord.objects.filter(environment__in=environments)
    key_fields = ("environment_id", "service_name", "strategy", "tier__name")
    intact = records.filter(pruned__isnull=True, damaged__isnull=True)
    newest = newest_good(intact).annotate(drill_status=Subquery(_last_drill()))
    for record in newest:
        key = (record.environment_id, record.service_name, record.strategy)
        row(*key, record.tier.name).record = record
    proven = RestoreDrill.objects.filter(
        record=OuterRef("pk"), status=ProofStatus.PASSED
    )
    for record in newest_good(
        intact.filter(Q(verified__isnull=False) | Exists(proven))
    ):
        key = (record.environment_id, record.service_name, record.strategy)
        row(*key, record.tier.name).assured = record

    failed = records.filter(failed_records())
    for values in failed.values(*key_fields).annotate(n=Count("id")):
        state = row(*(values[k] for k in key_fields))
        state.failures_total = values["n"]
    for values in (
        failed.annotate(good=Subquery(_newest_good_created()))
        .filter(Q(good__isnull=True) | Q(created__gt=F("good")))
        .values(*key_fields)
        .annotate(n=Count("id"), last=Max("created"))
    ):
        state = row(*(values[k] for k in key_fields))
        state.failures = values["n"]
        state.last_failure = values["last"]
    return sorted(rows.values(), key=lambda state: state.sort_key)


def _last_drill():
    return (
        RestoreDrill.objects.filter(record=OuterRef("pk"))
        .exclude(status=ProofStatus.RUNNING)
        .order_by("-created", "-id")
        .values("status")[:1]
    )


def _newest_good_created():
    return (
        BackupRecord.objects.filter(
            environment=OuterRef("environment"),
            service_name=OuterRef("service_name"),
            strategy=OuterRef("strategy"),
            tier=OuterRef("tier"),
            status=RecordStatus.SUCCEEDED,
        )
        .order_by("-created")
        .values("created")[:1]
    )


def running_backups(environments, kinds=BACKUP_KINDS):
    """Return the active operations of ``kinds`` (backups) in
    ``environments``, oldest first."""
    return list(
        Operation.objects.filter(
            environment__in=environments,
            kind__in=kinds,
            status__in=OperationStatus.ACTIVE,
        )
        .select_related("environment", "stack", "service", "requested_by")
        .order_by("created")
    )


def environment_backups(environment, *, now=None):
    """Return the :class:`EnvironmentBackups` of ``environment``."""
    now = now or timezone.now()
    rows = backup_states([environment], now=now)
    newest = {
        (r.service, r.strategy, r.tier): r.record.created for r in rows if r.record
    }
    failures = []
    for record in (
        BackupRecord.objects.filter(failed_records(), environment=environment)
        .select_related("tier", "operation")
        .order_by("-created", "-id")[: FAILURES_SHOWN * 4]
    ):
        good = newest.get((record.service_name, record.strategy, record.tier.name))
        if good is None or record.created > good:
            failures.append(record)
        if len(failures) == FAILURES_SHOWN:
            break
    policy = BackupPolicy.objects.filter(environment=environment).first()
    return EnvironmentBackups(
        environment=environment,
        policy=policy,
        rows=rows,
        failures=failures,
        running=running_backups([environment], PAGE_KINDS),
        repositories=repository_states(environment, policy),
    )

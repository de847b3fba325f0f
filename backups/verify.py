"""Verification of the backup repositories: ``backup.verify``, and the ledger.

Each run checks, per repository tier of the environment's policy, the
repository's structure (``restic check``: index, snapshots, every tree) and
re-reads the data of one group of its packs (``--read-data-subset n/N``).
restic puts a pack in group ``first byte of its id % N + 1``
(:func:`backups.restic.pack_group`), so the groups are fixed: a run takes
the group after the last one that passed, and N runs re-read every pack
that existed when its group's turn came. N is chosen so that a full turn
fits in ``verification.integrity.read_all_within_days`` at the schedule's
pace (:func:`groups_for`).

**The ledger.** A check keeps the id prefixes of the packs it re-read; the
share of today's packs re-read by passed checks within the window is its
``covered_packs`` (and bytes). A pack written after its group's turn counts
as not yet re-read until the next turn reads it.

**Damage.** A pack restic reports missing, unreadable or not matching its id
fails the check; the snapshots that need it (a file's data or a tree in it,
:meth:`backups.restic.Repository.snapshots_using`) mark their records
damaged, with the pack and restic's words. Records a passed check covered
(written before it started, intact) are ``verified``.

The run covers the whole environment: ``restic check`` locks the
repository exclusively, so backups and retention runs of the environment
wait for it and it waits for them.
"""

import time
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, PlanError, register
from stacks import engine

from .alerts import evaluate_after
from .choices import ProofStatus, RecordStatus
from .models import (
    BackupConfigValue,
    BackupPolicy,
    BackupRecord,
    RepositoryCheck,
    StorageTier,
)
from .restic import ResticError, pack_group
from .tiers import BackupError, repository
from .volumes import clear_stale_locks

__all__ = [
    "PACK_PREFIX",
    "VerifyBackupsJob",
    "groups_for",
    "integrity_settings",
    "next_subset",
]

#: Characters of a pack id the ledger keeps (64 bits: no collision in
#: practice, a quarter of the id's size).
PACK_PREFIX = 16
#: restic's groups are the values of a pack id's first byte modulo N.
MAX_GROUPS = 256
# Runs per day of each check frequency.
RUNS_PER_DAY = {"hourly": 24, "daily": 1, "weekly": 1 / 7, "monthly": 1 / 30}
DEFAULT_WINDOW_DAYS = 7
DEFAULT_SCHEDULE = "0 5 * * *"


@dataclass(frozen=True)
class IntegritySettings:
    """``verification.integrity`` of ``backup-strategies.yaml``."""

    enabled: bool = True
    check_frequency: str = "daily"
    schedule: str = DEFAULT_SCHEDULE
    read_all_within_days: int = DEFAULT_WINDOW_DAYS

    @property
    def groups(self):
        return groups_for(self.read_all_within_days, self.check_frequency)


def _verification():
    row = BackupConfigValue.objects.filter(key="verification").first()
    return row.value if row is not None and isinstance(row.value, dict) else {}


def integrity_settings():
    """Return the :class:`IntegritySettings` stored from the file."""
    integrity = _verification().get("integrity") or {}
    frequency = integrity.get("check_frequency") or "daily"
    return IntegritySettings(
        enabled=bool(integrity.get("enabled", True)),
        check_frequency=frequency if frequency in RUNS_PER_DAY else "daily",
        schedule=str(integrity.get("schedule") or DEFAULT_SCHEDULE),
        read_all_within_days=int(
            integrity.get("read_all_within_days") or DEFAULT_WINDOW_DAYS
        ),
    )


def groups_for(window_days, frequency="daily"):
    """Return N: the runs that fit in ``window_days`` at ``frequency``
    (1..256), so every group is re-read within the window."""
    runs = int(window_days * RUNS_PER_DAY.get(frequency, 1))
    return max(1, min(MAX_GROUPS, runs))


def next_subset(environment, tier, groups):
    """Return the ``n/N`` group the next check of this repository reads.

    The one after the group of the newest passed check with the same N;
    the first when there is none (or N changed).
    """
    last = (
        RepositoryCheck.objects.filter(
            environment=environment, tier=tier, status=ProofStatus.PASSED
        )
        .exclude(subset="")
        .order_by("-created", "-id")
        .first()
    )
    if last is not None:
        n, _, total = last.subset.partition("/")
        if total == str(groups) and n.isdigit():
            return f"{int(n) % groups + 1}/{groups}"
    return f"1/{groups}"


def parse_subset(text):
    """Return ``(n, N)`` of an ``n/N`` text, or raise PlanError."""
    n, sep, total = str(text).partition("/")
    if not (sep and n.isdigit() and total.isdigit()):
        raise PlanError(f"Subset {text!r}: expected n/N, e.g. 3/7.")
    n, total = int(n), int(total)
    if not 1 <= total <= MAX_GROUPS or not 1 <= n <= total:
        raise PlanError(
            f"Subset {text!r}: N is 1..{MAX_GROUPS} and n is 1..N (restic's groups)."
        )
    return n, total


def _tiers(environment, wanted=None):
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        raise PlanError(f"Environment {environment.name} has no backup storage tiers.")
    by_name = {t.name: t for t in StorageTier.objects.filter(name__in=policy.tiers)}
    tiers = [by_name[n] for n in policy.tiers if n in by_name]
    tiers = [t for t in tiers if t.is_repository]
    if wanted:
        tiers = [t for t in tiers if t.name == wanted]
        if not tiers:
            raise PlanError(
                f"Environment {environment.name} keeps no repository in a tier "
                f"named {wanted!r} (its tiers: {', '.join(policy.tiers)})."
            )
    return tiers


def _subset_for(environment, tier, parameters, groups):
    subset = str(parameters.get("subset") or "auto")
    if subset == "auto":
        return next_subset(environment, tier, groups)
    if subset == "none":
        return ""
    if subset == "all":
        return "1/1"
    parse_subset(subset)
    return subset


def covered(environment, tier, packs, window_days, *, now=None, extra=()):
    """Return ``(packs, bytes)`` of ``packs`` ({id: PackInfo}) re-read by
    passed checks in the last ``window_days`` (plus the prefixes ``extra``)."""
    now = now or timezone.now()
    since = now - timezone.timedelta(days=window_days)
    read = set(extra)
    checks = RepositoryCheck.objects.filter(
        environment=environment,
        tier=tier,
        status=ProofStatus.PASSED,
        created__gte=since,
    ).values_list("packs_read", flat=True)
    for prefixes in checks:
        read.update(prefixes)
    count = size = 0
    for pack_id, info in packs.items():
        if pack_id[:PACK_PREFIX] in read:
            count += 1
            size += info.size
    return count, size


@register
class VerifyBackupsJob(OperationRunner):
    """Check an environment's repositories and re-read one group of packs."""

    kind = "backup.verify"
    verb = Verb.CHECK
    queue = "long"
    mutating = True
    job_timeout = 12 * 3600

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        parameters = parameters or {}
        if stack is not None:
            raise PlanError("Verification covers a whole environment.")
        settings = integrity_settings()
        groups = settings.groups
        tiers = _tiers(environment, parameters.get("tier"))
        return {
            "read_all_within_days": settings.read_all_within_days,
            "groups": groups,
            "tiers": {
                t.name: _subset_for(environment, t, parameters, groups) or "structure"
                for t in tiers
            },
        }

    def run(self):
        environment = self.operation.environment
        parameters = self.operation.parameters or {}
        settings = integrity_settings()
        try:
            tiers = _tiers(environment, parameters.get("tier"))
        except PlanError as exc:
            raise OperationFailed(str(exc)) from exc
        result, failed = {}, []
        for index, tier in enumerate(tiers):
            self.check_cancel()
            subset = _subset_for(environment, tier, parameters, settings.groups)
            check = RepositoryCheck.objects.create(
                environment=environment,
                tier=tier,
                operation=self.operation,
                subset=subset,
            )
            try:
                summary = self.check_repository(check, settings)
            except (BackupError, ResticError, engine.EngineError) as exc:
                check.status = ProofStatus.ERROR
                check.error = str(exc)
                check.finished = timezone.now()
                check.save()
                self.log.error(str(exc))
                failed.append(f"{tier.name}: {exc}")
                result[tier.name] = {"status": check.status, "error": str(exc)}
                continue
            result[tier.name] = summary
            if check.status != ProofStatus.PASSED:
                failed.append(f"{tier.name}: {check.error}")
            self.progress(100 * (index + 1) / len(tiers), tier.name)
        evaluate_after(environment, self.log)
        if failed:
            raise OperationFailed("Verification failed: " + "; ".join(failed))
        return result

    def check_repository(self, check, settings):
        environment, tier = check.environment, check.tier
        repo = repository(tier, environment)
        if not repo.exists():
            self.log.info(f"{repo.name}: no repository yet, nothing to verify")
            check.status = ProofStatus.PASSED
            check.packs_total = check.covered_packs = 0
            check.bytes_total = check.covered_bytes = 0
            check.finished = timezone.now()
            check.save()
            return {"status": check.status, "packs": 0}
        clear_stale_locks(environment, repo, self.log)
        started = timezone.now()
        packs = repo.packs()
        groups = n = None
        chosen = {}
        if check.subset:
            n, groups = parse_subset(check.subset)
            chosen = {p: i for p, i in packs.items() if pack_group(p, groups) == n}
        check.packs_total = len(packs)
        check.bytes_total = sum(p.size for p in packs.values())
        check.bytes_read = sum(p.size for p in chosen.values())
        what = (
            f"group {check.subset}: {len(chosen)} pack(s)"
            if check.subset
            else "no data"
        )
        self.log.info(
            f"{repo.name}: checking the structure and re-reading {what} of {len(packs)}"
        )
        clock = time.monotonic()
        report = repo.check(read_data_subset=check.subset or None)
        elapsed = time.monotonic() - clock
        check.finished = timezone.now()
        if report.ok:
            check.status = ProofStatus.PASSED
            check.packs_read = sorted(p[:PACK_PREFIX] for p in chosen)
            verified = (
                BackupRecord.objects.filter(
                    environment=environment,
                    tier=tier,
                    status=RecordStatus.SUCCEEDED,
                    created__lt=started,
                    verified__isnull=True,
                    pruned__isnull=True,
                    damaged__isnull=True,
                )
                .exclude(snapshot_id="")
                .update(verified=check.finished)
            )
            self.log.info(
                f"{repo.name}: passed in {elapsed:.1f} s; {verified} record(s) "
                "verified for the first time"
            )
        else:
            check.status = ProofStatus.FAILED
            damaged = set(report.damaged_packs)
            for prefix in report.damaged_pack_prefixes:
                damaged.update(p for p in packs if p.startswith(prefix))
            check.damaged_packs = sorted(damaged)
            check.damaged_records = self.mark_damaged(
                repo, check, damaged, packs, report.output
            )
            check.error = (
                f"{len(damaged)} damaged pack(s): "
                + ", ".join(p[:12] for p in sorted(damaged))
                + f"; {check.damaged_records} record(s) need them"
                if damaged
                else "restic check found errors: " + _last_error(report.output)
            )
            self.log.error(f"{repo.name}: {check.error}")
        check.covered_packs, check.covered_bytes = covered(
            environment,
            tier,
            packs,
            settings.read_all_within_days,
            extra=check.packs_read,
        )
        check.save()
        share = check.coverage
        self.log.info(
            f"{repo.name}: ledger: {check.covered_packs} of {check.packs_total} "
            f"pack(s) re-read within {settings.read_all_within_days} day(s)"
            + (f" ({share:.0%})" if share is not None else "")
        )
        return {
            "status": check.status,
            "subset": check.subset,
            "packs": check.packs_total,
            "packs_read": len(check.packs_read),
            "covered_packs": check.covered_packs,
            "damaged_packs": check.damaged_packs,
            "damaged_records": check.damaged_records,
        }

    def mark_damaged(self, repo, check, damaged, packs, output):
        """Mark the records whose snapshots need a damaged pack; return how
        many."""
        if not damaged:
            return 0
        snapshots = repo.snapshots_using(damaged, packs)
        reason = (
            f"Repository check #{check.pk} ({check.created:%Y-%m-%d %H:%M}): "
            f"damaged pack(s) {', '.join(p[:12] for p in sorted(damaged))}: "
            f"{_last_error(output)}"
        )
        records = BackupRecord.objects.filter(
            environment=check.environment,
            tier=check.tier,
            snapshot_id__in=snapshots,
        ).filter(Q(damaged__isnull=True))
        for record in records:
            self.log.error(f"  record {record.pk} ({record}) needs a damaged pack")
        return records.update(damaged=check.finished, damage=reason[:2000])


def _last_error(output):
    """Return restic's most telling line about the damage."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip()
        and "retrying after" not in line
        and not line.startswith("[")
        and line.strip() != "Fatal: repository contains errors"
    ]
    for line in lines:
        lowered = line.lower()
        if any(w in lowered for w in ("does not exist", "does not match", "error")):
            return line[:500]
    return lines[-1][:500] if lines else "no output"

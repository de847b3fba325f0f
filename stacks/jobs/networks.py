"""Runners of the network checks: conflicts, validation, health, cleanup.

Each works on one environment and reads its Docker host through
:mod:`stacks.engine`; the logic is in :mod:`stacks.networks`. A check that
finds a problem *fails* (so ``manage.py`` exits non-zero for cron and CI)
after logging every finding; the checks change nothing, and a cleanup
touches only networks no environment plans, so none of them takes a place
in the environment's line.
"""

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, register

from .. import engine
from ..networks import (
    check_environment,
    check_health,
    environment_networks,
    prune_probes,
    remove_orphans,
    validate_environment,
)
from ..operations import get_config
from ..secrets import InvalidReference, MissingSecret
from .lifecycle import flag

__all__ = [
    "CheckNetworkConflictsJob",
    "CheckNetworkHealthJob",
    "CleanupNetworksJob",
    "ValidateNetworksJob",
]


class _NetworkRunner(OperationRunner):
    queue = "default"
    mutating = False
    job_timeout = 600

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        planned, problem = environment_networks(environment)
        return {
            "docker_host": environment.docker_host,
            "networks": {p.docker_name: p.subnet for p in planned},
            **({"problem": problem.message} if problem else {}),
            **cls.describe(parameters or {}),
        }

    @classmethod
    def describe(cls, parameters):
        return {"changes": "none (read-only check)"}

    def run(self):
        self.environment = self.operation.environment
        self.parameters = self.operation.parameters or {}
        self.owner = str(self.operation.pk)
        try:
            self.client = engine.client_for(self.environment)
            with engine.engine_errors(engine.describe_host(self.environment)):
                return self.steps()
        except engine.EngineError as exc:
            raise OperationFailed(str(exc)) from exc
        except (MissingSecret, InvalidReference, ValueError) as exc:
            raise OperationFailed(
                f"Configuration of environment {self.environment.name}: {exc}"
            ) from exc

    def steps(self):
        raise NotImplementedError


@register
class CheckNetworkConflictsJob(_NetworkRunner):
    """Compare the planned subnets with the host and the other plans.

    Parameters: ``strict`` also fails on warnings (default address pools).
    """

    kind = "network.check"
    verb = Verb.CHECK

    def steps(self):
        env, log = self.environment, self.log
        log.info(f"Reading {engine.describe_host(env)}")
        result = check_environment(env, client=self.client, owner=self.owner)
        facts, report = result.facts, result.report
        mine = [p for p in result.planned if p.environment == env.name]
        log.info(
            f"{len(mine)} planned network(s) of {env.name}, "
            f"{len(result.planned) - len(mine)} of other environments on this "
            f"host; {len(facts.networks)} Docker network(s), "
            f"{sum(a.kind == 'route' for a in facts.addresses)} route(s), "
            f"{sum(a.kind == 'interface' for a in facts.addresses)} interface "
            f"address(es), {len(facts.pools)} default address pool(s)"
            + ("" if facts.pools_configured else " (Docker's built-in ones)")
        )
        for planned in mine:
            log.info(f"planned {planned.docker_name} {planned.subnet}")
        for error in facts.errors:
            log.error(f"not checked: {error}")
        for problem in report.problems:
            log.error(problem.message)
        for conflict in report.conflicts:
            log.error(f"conflict: {conflict.message()}")
        for warning in report.warnings:
            log.warning(f"warning: {warning.message()}")
        self.progress(100, "checked")
        strict = flag(self.parameters.get("strict"))
        counts = []
        if report.conflicts:
            counts.append(f"{len(report.conflicts)} conflict(s)")
        if report.problems:
            counts.append(f"{len(report.problems)} plan problem(s)")
        if facts.errors:
            counts.append("the host's routes unread")
        if strict and report.warnings:
            counts.append(f"{len(report.warnings)} warning(s) (strict)")
        if counts:
            first = (
                report.problems[0].message
                if report.problems
                else report.conflicts[0].message()
                if report.conflicts
                else facts.errors[0]
                if facts.errors
                else report.warnings[0].message()
            )
            raise OperationFailed(
                f"Networks of {env.name}: {', '.join(counts)}. First: {first}"
            )
        log.info(
            f"No conflicts: {len(mine)} planned network(s) of {env.name} are clear"
            + (f" ({len(report.warnings)} warning(s))" if report.warnings else "")
        )
        return result.as_dict()


@register
class ValidateNetworksJob(_NetworkRunner):
    """Check networks, attachments and name resolution against the plan."""

    kind = "network.validate"
    verb = Verb.CHECK

    def steps(self):
        env, log = self.environment, self.log
        validation = validate_environment(
            env, client=self.client, owner=self.owner, log=log
        )
        for finding in validation.findings:
            if finding.ok:
                log.info(f"ok: {finding.text}")
            else:
                log.error(f"FAILED: {finding.text}")
        for stack in validation.skipped:
            log.info(f"{stack}: not running here, not validated")
        self.progress(100, "validated")
        failures = validation.failures
        result = {
            "environment": env.name,
            "findings": [f.as_dict() for f in validation.findings],
            "skipped": validation.skipped,
        }
        if failures:
            raise OperationFailed(
                f"Validation of {env.name}: {len(failures)} of "
                f"{len(validation.findings)} check(s) failed. First: "
                f"{failures[0].text}"
            )
        if not validation.findings:
            log.info(f"Nothing of {env.name} runs on its Docker host.")
        else:
            log.info(f"All {len(validation.findings)} check(s) passed.")
        return result


@register
class CheckNetworkHealthJob(_NetworkRunner):
    """Probe each running stack's services from inside its network."""

    kind = "network.health"
    verb = Verb.CHECK

    def steps(self):
        env, log = self.environment, self.log
        rows, skipped = check_health(
            env,
            client=self.client,
            owner=self.owner,
            operation=self.operation,
            log=log,
        )
        for row in rows:
            timing = f"{row.seconds * 1000:.0f} ms" if row.seconds is not None else "-"
            line = (
                f"{row.stack}/{row.service}: {'ok' if row.ok else 'FAILED'} "
                f"{row.target} {timing} ({row.detail})"
            )
            (log.info if row.ok else log.error)(line)
        for stack in skipped:
            log.info(f"{stack}: not running here, not probed")
        keep = get_config()["NETWORK_HEALTH_KEEP_DAYS"]
        pruned = prune_probes(env, keep)
        if pruned:
            log.info(
                f"{pruned} probe(s) older than {keep} day(s) removed from the history"
            )
        self.progress(100, "probed")
        failed = [r for r in rows if not r.ok]
        if failed:
            raise OperationFailed(
                f"Health of {env.name}: {len(failed)} of {len(rows)} probe(s) "
                f"failed: "
                + ", ".join(f"{r.stack}/{r.service} ({r.detail})" for r in failed)
            )
        if not rows:
            log.info(f"No stack of {env.name} runs on its Docker host.")
        return {
            "environment": env.name,
            "probes": [
                {
                    "stack": r.stack,
                    "service": r.service,
                    "target": r.target,
                    "ok": r.ok,
                    "seconds": r.seconds,
                    "detail": r.detail,
                }
                for r in rows
            ],
            "skipped": skipped,
        }


@register
class CleanupNetworksJob(_NetworkRunner):
    """Remove the portal's networks that no plan names and nothing uses.

    Parameters: ``dry_run`` (default true: only list them),
    ``include_unknown`` (also networks of environments the database does
    not have).
    """

    kind = "network.cleanup"
    verb = Verb.CLEANUP

    @classmethod
    def describe(cls, parameters):
        dry_run = flag(parameters.get("dry_run", True))
        return {
            "dry_run": dry_run,
            "include_unknown": flag(parameters.get("include_unknown")),
            "changes": "none (dry run)"
            if dry_run
            else "removes the portal's networks that no plan names and no "
            "container uses",
        }

    def steps(self):
        env, log = self.environment, self.log
        dry_run = flag(self.parameters.get("dry_run", True))
        result = remove_orphans(
            self.client,
            env,
            dry_run=dry_run,
            include_unknown=flag(self.parameters.get("include_unknown")),
            log=log,
        )
        self.progress(100, "done")
        summary = {
            "environment": env.name,
            "dry_run": dry_run,
            "orphans": [o.as_dict() for o in result.orphans],
            "in_use": [o.as_dict() for o in result.in_use],
            "planned": result.planned,
        }
        if result.failed:
            raise OperationFailed(
                f"{len(result.failed)} orphaned network(s) of {env.name} could "
                f"not be removed: {result.failed[0].error}"
            )
        if dry_run:
            log.info(
                f"Dry run: {len(result.orphans)} orphaned network(s) would be "
                "removed; nothing was."
            )
        else:
            log.info(f"Removed {len(result.removed)} orphaned network(s).")
        return summary

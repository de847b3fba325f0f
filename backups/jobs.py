"""Backup runners: what the worker executes (the long queue).

``backup.service`` backs up one service of an environment: its strategy
(``backup-strategies.yaml``, :mod:`backups.strategies`) reads the data from
the service's running container into the first tier, and the snapshot is
copied into the colder tiers (:class:`backups.runs.BackupRun`).
``backup.config`` backs up the environment's configuration
(:mod:`backups.config_backup`).
"""

from portal.operations import OperationFailed, PlanError, register
from stacks import engine

from .config_backup import BackupConfigJob
from .drills import DrillBackupJob
from .models import BackupStrategy

# The repository runners: imported so the operations engine, which imports
# each app's jobs module, registers them.
from .prune import PruneBackupsJob
from .restores import RestoreBackupJob
from .runs import BackupRun, fail_abandoned_records, policy_parts, snapshot_tags
from .schema import STRATEGIES
from .strategies import BackupContext, strategy_for
from .tiers import BackupError
from .verify import VerifyBackupsJob

__all__ = [
    "BackupConfigJob",
    "BackupServiceJob",
    "DrillBackupJob",
    "PruneBackupsJob",
    "RestoreBackupJob",
    "VerifyBackupsJob",
    "fail_abandoned_records",
    "policy_parts",
    "snapshot_tags",
]


def _plan_parts(environment, service, parameters):
    if service is None:
        raise PlanError("A backup names the service to back up.")
    strategy = BackupStrategy.objects.filter(service=service.name).first()
    if strategy is None:
        raise PlanError(
            f"Service {service.name} has no backup strategy "
            "(services in configs/backup-strategies.yaml)."
        )
    names = STRATEGIES[strategy.method]
    name = parameters.get("strategy") or names[0]
    if name not in names:
        raise PlanError(
            f"Service {service.name} ({strategy.method}) has no {name!r} backup "
            f"(it has: {', '.join(names)})."
        )
    tiers, backup_type = policy_parts(environment, parameters)
    return strategy, name, backup_type, tiers


@register
class BackupServiceJob(BackupRun):
    """Back up one service's data into the environment's storage tiers."""

    kind = "backup.service"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        strategy, name, backup_type, tiers = _plan_parts(
            environment, service, parameters or {}
        )
        return {
            "service": service.name,
            "method": strategy.method,
            "strategy": name,
            "backup_type": backup_type,
            "tiers": [{"name": t.name, "kind": str(t.kind)} for t in tiers],
        }

    def run(self):
        operation = self.operation
        environment, service = operation.environment, operation.service
        parameters = operation.parameters or {}
        try:
            strategy, name, backup_type, tiers = _plan_parts(
                environment, service, parameters
            )
        except PlanError as exc:
            raise OperationFailed(str(exc)) from exc
        return self.write_tiers(
            environment,
            tiers,
            backup_type,
            lambda: self.back_up(
                environment, service, strategy, name, backup_type, tiers[0]
            ),
        )

    # -- steps -----------------------------------------------------------------

    def back_up(self, environment, service, strategy_row, name, backup_type, tier):
        """Read the service's data into ``tier``; return the record."""
        client = engine.client_for(environment)
        states = engine.service_states(client, environment.project_name(service.stack))
        state = states.get(service.name)
        if state is None or state.state != "running":
            raise BackupError(
                f"Service {service.name} has no running container in "
                f"{environment.name} ({state.state if state else 'none'}); start it "
                "to back it up."
            )

        def strategy(progress):
            return strategy_for(
                BackupContext(
                    environment=environment,
                    stack=service.stack,
                    service=service,
                    strategy=strategy_row,
                    client=client,
                    container=state.id,
                    log=self.log,
                    check_cancel=self.check_cancel,
                    progress=progress,
                    parameters=self.operation.parameters or {},
                    tier=tier,
                    owner=str(self.operation.pk),
                ),
                name,
            )

        return self.snapshot(
            environment,
            tier,
            service=service,
            service_name=service.name,
            stack_name=service.stack.name,
            strategy_name=name,
            backup_type=backup_type,
            strategy=strategy,
        )

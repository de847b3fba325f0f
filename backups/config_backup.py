"""``backup.config``: the environment's configuration, environment-wide.

Not a service's data, so not a ``backup.service``: one operation per
environment (``stack`` None, so it waits for the environment's other
mutating operations and they for it) whose first tier's snapshot is the
:class:`~backups.strategies.config.ConfigStrategy` archive (rendered
compose files and the configuration folder, secrets redacted), then copied
into the colder tiers like any backup. Records carry the service name
``config`` and no service; the snapshot's tags have no ``stack=``.

:func:`backups.operations.backup_config` requests it; ``make backup-full``
asks for it next to every service's backup.
"""

from portal.operations import OperationFailed, PlanError, register

from .runs import BackupRun, policy_parts
from .strategies import BackupContext
from .strategies.config import CONFIG_SERVICE, ConfigStrategy

__all__ = ["BackupConfigJob"]


@register
class BackupConfigJob(BackupRun):
    """Back up the environment's rendered compose files and configuration."""

    kind = "backup.config"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        if stack is not None or service is not None:
            raise PlanError(
                "A configuration backup is environment-wide: it names no stack or "
                "service."
            )
        tiers, backup_type = policy_parts(environment, parameters or {})
        return {
            "service": CONFIG_SERVICE,
            "strategy": ConfigStrategy.name,
            "backup_type": backup_type,
            "tiers": [{"name": t.name, "kind": str(t.kind)} for t in tiers],
        }

    def run(self):
        environment = self.operation.environment
        try:
            tiers, backup_type = policy_parts(
                environment, self.operation.parameters or {}
            )
        except PlanError as exc:
            raise OperationFailed(str(exc)) from exc

        def strategy(progress):
            return ConfigStrategy(
                BackupContext(
                    environment=environment,
                    stack=None,
                    service=None,
                    strategy=None,
                    client=None,
                    container="",
                    log=self.log,
                    check_cancel=self.check_cancel,
                    progress=progress,
                    parameters=self.operation.parameters or {},
                    tier=tiers[0],
                    owner=str(self.operation.pk),
                )
            )

        return self.write_tiers(
            environment,
            tiers,
            backup_type,
            lambda: self.snapshot(
                environment,
                tiers[0],
                service=None,
                service_name=CONFIG_SERVICE,
                stack_name="",
                strategy_name=ConfigStrategy.name,
                backup_type=backup_type,
                strategy=strategy,
            ),
        )

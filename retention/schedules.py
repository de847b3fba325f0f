"""The cleanup schedules of the environments, for ``manage.py crontab``.

Each environment listed in ``environments`` of retention-policies.yaml gets
one scheduled command, ``retention cleanup --env <name> --scheduled``, at
its ``cleanup_schedule`` (else ``global.cleanup_schedule``). ``--scheduled``
gives the run a window (``not_after``: the time cron fired plus
``global.schedule_grace_minutes``): a run that cannot start in it, waiting
in line or for an approval, does not run late. Registered in
:class:`retention.apps.RetentionConfig`.
"""

from portal.choices import Verb
from portal.schedules import ScheduledCommand

from .models import EnvironmentRetention
from .policies import cleanup_settings, global_settings

__all__ = ["scheduled_cleanups"]


def scheduled_cleanups():
    """Return the scheduled cleanup of each environment the file lists."""
    glob = global_settings()
    commands = []
    rows = EnvironmentRetention.objects.select_related("environment").order_by(
        "environment__name"
    )
    for row in rows:
        environment = row.environment
        settings = cleanup_settings(environment, glob=glob)
        if not settings.schedule:
            continue
        what = "plan (dry run)" if settings.dry_run else "clean up"
        commands.append(
            ScheduledCommand(
                name=f"retention-{environment.name}",
                schedule=settings.schedule,
                args=("retention", "cleanup", "--env", environment.name, "--scheduled"),
                environment=environment.name,
                verb=Verb.CLEANUP,
                description=f"{what} what the retention policies let go"
                + (
                    ", after a verified backup"
                    if settings.backup_before_cleanup and not settings.dry_run
                    else ""
                ),
            )
        )
    return commands

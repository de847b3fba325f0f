from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal.metrics import register_collector
        from portal.panels import register_panel
        from portal.schedules import register_schedule
        from stacks.config.companions import Companion, register_companion
        from stacks.credentials import register_variable_users
        from stacks.guards import register_destroy_guard

        from . import config
        from .credentials import tier_users
        from .guards import fresh_backup_guard
        from .metrics import BackupCollector
        from .panels import backup_panel, dashboard_panel
        from .schedules import (
            scheduled_alerts,
            scheduled_backups,
            scheduled_drills,
            scheduled_verifications,
        )

        register_companion(
            Companion(
                config.FILENAME,
                config.check,
                importer=config.importer,
                exporter=config.export_data,
            )
        )
        register_collector("backups", BackupCollector)
        register_panel("backups", backup_panel)
        register_destroy_guard("backups", fresh_backup_guard)
        register_panel("backups", dashboard_panel, page="dashboard", order=40)
        register_schedule("backups", scheduled_backups)
        register_schedule("backup-verifications", scheduled_verifications)
        register_schedule("backup-alerts", scheduled_alerts)
        register_variable_users("backups", tier_users)
        register_schedule("backup-drills", scheduled_drills)

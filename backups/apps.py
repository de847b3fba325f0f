from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal.metrics import register_collector
        from portal.schedules import register_schedule
        from stacks.config.companions import Companion, register_companion
        from stacks.credentials import register_variable_users

        from . import config
        from .credentials import tier_users
        from .metrics import BackupCollector
        from .schedules import scheduled_backups

        register_companion(
            Companion(
                config.FILENAME,
                config.check,
                importer=config.importer,
                exporter=config.export_data,
            )
        )
        register_collector("backups", BackupCollector)
        register_schedule("backups", scheduled_backups)
        register_variable_users("backups", tier_users)

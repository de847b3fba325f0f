from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from stacks.config.companions import Companion, register_companion

        from . import config

        register_companion(
            Companion(
                config.FILENAME,
                config.check,
                importer=config.importer,
                exporter=config.export_data,
            )
        )

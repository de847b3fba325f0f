from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal.metrics import register_collector
        from portal.panels import register_panel
        from portal.schedules import register_schedule
        from stacks.config.companions import Companion, register_companion

        from . import config
        from .metrics import RetentionCollector
        from .panels import retention_panel
        from .schedules import scheduled_cleanups

        register_companion(
            Companion(
                config.FILENAME,
                config.check,
                importer=config.importer,
                exporter=config.export_data,
            )
        )
        register_collector("retention", RetentionCollector)
        register_panel("retention", retention_panel)
        register_schedule("retention", scheduled_cleanups)

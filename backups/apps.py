from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from stacks.config.companions import Companion, register_companion

        from .schema import check_backup_strategies

        def check(document, file, parsed):
            return check_backup_strategies(
                document, file, environments=parsed.environment_names()
            )

        register_companion(Companion("backup-strategies.yaml", check))

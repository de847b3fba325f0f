from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from stacks.config.companions import Companion, register_companion

        from .schema import check_retention_policies

        def check(document, file, parsed):
            return check_retention_policies(
                document,
                file,
                environments=parsed.environment_names(),
                volumes=set(parsed.volumes),
            )

        register_companion(Companion("retention-policies.yaml", check))

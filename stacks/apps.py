from django.apps import AppConfig


class StacksConfig(AppConfig):
    name = "stacks"
    verbose_name = "Stacks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal.navigation import register_nav
        from portal.panels import register_panel

        from .dashboard import environments_panel

        register_nav(
            "environments",
            "Environments",
            "stacks:environment_list",
            order=20,
            prefixes=("/environments/",),
        )
        register_nav(
            "networks",
            "Networks",
            "stacks:network_map",
            order=25,
            prefixes=("/networks/",),
        )
        register_panel("environments", environments_panel, page="dashboard", order=10)

        from portal.schedules import register_schedule

        from .schedules import scheduled_network_health

        register_schedule("network-health", scheduled_network_health)

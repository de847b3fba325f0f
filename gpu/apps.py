from django.apps import AppConfig


class GpuConfig(AppConfig):
    name = "gpu"
    verbose_name = "GPU status"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from portal.metrics import register_collector
        from portal.panels import register_panel
        from stacks.operations import register_radius_extra

        from .dashboard import gpu_panel
        from .metrics import GpuCollector
        from .radius import gpu_memory_freed

        register_collector("gpu", GpuCollector)
        register_radius_extra("gpu_memory", gpu_memory_freed)
        register_panel("gpus", gpu_panel, page="dashboard", order=50)

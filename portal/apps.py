from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
        from .dashboard import operations_panel
        from .navigation import register_nav, staff
        from .panels import register_panel
        from .waiting import approvals_panel

        register_nav("dashboard", "Dashboard", "portal:dashboard", order=10)
        register_nav("operations", "Operations", "portal:operation_list", order=30)
        register_nav(
            "audit",
            "Audit log",
            "admin:portal_auditentry_changelist",
            order=80,
            visible=lambda user: (
                staff(user) and user.has_perm("portal.view_auditentry")
            ),
        )
        register_nav("approvals", "Approvals", "portal:approval_list", order=35)
        register_nav("admin", "Admin", "admin:index", order=90, visible=staff)
        register_panel("operations", operations_panel, page="dashboard", order=20)
        register_panel("approvals", approvals_panel, page="dashboard", order=15)

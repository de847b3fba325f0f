from django.urls import path

from . import network_views, views, wipe_views

app_name = "stacks"

urlpatterns = [
    path("", views.environment_list, name="environment_list"),
    path(
        "environments/<str:name>/", views.environment_detail, name="environment_detail"
    ),
    path(
        "environments/<str:name>/status.json",
        views.environment_status_json,
        name="environment_status",
    ),
    path(
        "environments/<str:name>/stacks/<str:stack>/logs/",
        views.stack_logs,
        name="stack_logs",
    ),
    *(
        path(
            f"environments/<str:name>/stacks/<str:stack>/{action}/",
            views.stack_action,
            {"action": action},
            name=f"stack_{action}",
        )
        for action in views.STACK_ACTIONS
    ),
    path("environments/<str:name>/wipe/", wipe_views.wipe_page, name="wipe"),
    path("networks/", network_views.network_map, name="network_map"),
    path(
        "environments/<str:name>/health/",
        network_views.network_health,
        name="network_health",
    ),
    path(
        "environments/<str:name>/networks/<str:action>/",
        network_views.network_action,
        name="network_action",
    ),
]

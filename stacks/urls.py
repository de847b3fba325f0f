from django.urls import path

from . import container_views, network_views, views, wipe_views

app_name = "stacks"

STACK = "environments/<str:name>/stacks/<str:stack>/"
SERVICE = STACK + "services/<str:service>/"

urlpatterns = [
    path("environments/", views.environment_list, name="environment_list"),
    path(
        "environments/<str:name>/", views.environment_detail, name="environment_detail"
    ),
    path(
        "environments/<str:name>/status.json",
        views.environment_status_json,
        name="environment_status",
    ),
    path(STACK + "logs/", views.stack_logs, name="stack_logs"),
    path(STACK + "impact/", views.stack_impact, name="stack_impact"),
    path(STACK + "stats/", container_views.stack_stats, name="stack_stats"),
    path(
        STACK + "stats.json", container_views.stack_stats_json, name="stack_stats_json"
    ),
    path(STACK + "compose/", container_views.stack_compose, name="stack_compose"),
    path(
        STACK + "compose.yml",
        container_views.stack_compose_file,
        name="stack_compose_file",
    ),
    path(SERVICE + "console/", container_views.service_console, name="service_console"),
    *(
        path(
            STACK + f"{action}/",
            views.stack_action,
            {"action": action},
            name=f"stack_{action}",
        )
        for action in views.STACK_ACTIONS
    ),
    *(
        path(
            SERVICE + f"{action}/",
            views.stack_action,
            {"action": action},
            name=f"service_{action}",
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

from django.urls import path

from . import views

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
]

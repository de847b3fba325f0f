from django.urls import path

from . import views

app_name = "backups"

urlpatterns = [
    path(
        "environments/<str:name>/backups/",
        views.environment_backups,
        name="environment_backups",
    ),
    path(
        "environments/<str:name>/backups/service/",
        views.backup_service,
        name="backup_service",
    ),
    path(
        "environments/<str:name>/backups/all/",
        views.backup_environment,
        name="backup_environment",
    ),
    path(
        "environments/<str:name>/backups/verify/",
        views.verify_environment,
        name="verify_environment",
    ),
    path("backups/records/<int:pk>/", views.record_detail, name="record_detail"),
    path(
        "environments/<str:name>/backups/records/<int:pk>/drill/",
        views.record_drill,
        name="record_drill",
    ),
    path(
        "environments/<str:name>/backups/records/<int:pk>/restore/",
        views.record_restore,
        name="record_restore",
    ),
]

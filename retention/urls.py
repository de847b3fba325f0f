from django.urls import path

from . import views

app_name = "retention"

urlpatterns = [
    path(
        "environments/<str:name>/retention/",
        views.environment_retention,
        name="environment_retention",
    ),
    path(
        "environments/<str:name>/retention/cleanup/",
        views.cleanup,
        name="cleanup",
    ),
]

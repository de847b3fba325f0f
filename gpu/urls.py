from django.urls import path

from . import views

app_name = "gpu"

urlpatterns = [
    path(
        "environments/<str:name>/gpus/", views.environment_gpus, name="environment_gpus"
    ),
    path(
        "environments/<str:name>/gpus/history.json",
        views.environment_gpus_json,
        name="environment_gpus_json",
    ),
]

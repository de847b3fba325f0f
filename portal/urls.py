"""URL configuration of Stack Portal."""

from django.contrib import admin
from django.urls import include, path

from . import views

portal_patterns = [
    path("operations/", views.operation_list, name="operation_list"),
    path("operations/host-check/", views.host_check, name="host_check"),
    path("operations/<uuid:pk>/", views.operation_detail, name="operation_detail"),
    path(
        "operations/<uuid:pk>/cancel/", views.operation_cancel, name="operation_cancel"
    ),
    path(
        "operations/<uuid:pk>/log.txt",
        views.operation_log_text,
        name="operation_log_text",
    ),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
    path("", include((portal_patterns, "portal"))),
    path("", include("stacks.urls")),
]

"""URL configuration of Stack Portal."""

import django_rq.urls
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern, URLResolver, include, path

from . import views

portal_patterns = [
    path("", views.dashboard, name="dashboard"),
    path("operations/", views.operation_list, name="operation_list"),
    path("operations/host-check/", views.host_check, name="host_check"),
    path("operations/<uuid:pk>/", views.operation_detail, name="operation_detail"),
    path(
        "operations/<uuid:pk>/cancel/", views.operation_cancel, name="operation_cancel"
    ),
    path(
        "operations/<uuid:pk>/approve/",
        views.operation_approve,
        name="operation_approve",
    ),
    path("approvals/", views.approval_list, name="approval_list"),
    path(
        "operations/<uuid:pk>/result/",
        views.operation_result,
        name="operation_result",
    ),
    path(
        "operations/<uuid:pk>/log.txt",
        views.operation_log_text,
        name="operation_log_text",
    ),
    path("metrics", views.metrics, name="metrics"),
]


def _is_superuser(user):
    """Admit active superusers; refuse other signed-in users outright.

    Anonymous users are sent to the login page; a signed-in user who is not
    a superuser gets 403 rather than a login page that would admit them
    again.
    """
    if user.is_active and user.is_superuser:
        return True
    if user.is_authenticated:
        raise PermissionDenied("Only superusers may use the RQ dashboard.")
    return False


def superuser_only(patterns):
    """Return ``patterns`` with every view, nested includes too, for superusers.

    django-rq checks only ``is_staff`` (its stats views also accept an API
    token), while requeueing or deleting jobs bypasses portal roles; so the
    whole dashboard is for superusers.
    """
    guard = user_passes_test(_is_superuser)
    wrapped = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            wrapped.append(
                URLResolver(
                    entry.pattern,
                    superuser_only(entry.url_patterns),
                    entry.default_kwargs,
                    entry.app_name,
                    entry.namespace,
                )
            )
        elif isinstance(entry, URLPattern):
            wrapped.append(
                URLPattern(
                    entry.pattern, guard(entry.callback), entry.default_args, entry.name
                )
            )
        else:
            raise TypeError(f"Unexpected URL entry {entry!r}")
    return wrapped


# The 500 page in the site's layout (400, 403 and 404 use Django's handlers
# with the templates of the same names).
handler500 = "portal.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Login and logout only: password reset needs outgoing mail, which the
    # portal does not configure; admins reset passwords with changepassword.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "django-rq/",
        include((superuser_only(django_rq.urls.urlpatterns), django_rq.urls.app_name)),
    ),
    path("", include((portal_patterns, "portal"))),
    path("", include("stacks.urls")),
    path("", include("backups.urls")),
    path("", include("retention.urls")),
    path("", include("gpu.urls")),
]

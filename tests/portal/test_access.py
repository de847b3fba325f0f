"""Logging in with the portal's own form, and who may use the RQ dashboard."""

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, reverse

from portal import urls as portal_urls
from portal.choices import Role

pytestmark = pytest.mark.django_db


# --- login -------------------------------------------------------------------


def test_home_anonymous_redirects_to_login_form(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == "/accounts/login/?next=/"


def test_login_form_is_the_portals(client):
    response = client.get("/accounts/login/?next=/")
    assert response.status_code == 200
    assert [t.name for t in response.templates][:2] == [
        "registration/login.html",
        "base.html",
    ]
    content = response.content.decode()
    assert 'action="/accounts/login/"' in content
    assert 'name="next" value="/"' in content


def test_login_non_staff_viewer_sees_only_own_environment(
    client, viewer, environment, other_environment
):
    """A user with only a Viewer role, without staff status, can log in."""
    assert not viewer.is_staff
    response = client.post(
        "/accounts/login/?next=/",
        {"username": viewer.username, "password": "pw", "next": "/"},
        follow=True,
    )
    assert response.redirect_chain == [("/", 302)]
    assert response.status_code == 200
    assert list(response.context["environments"]) == [environment]
    content = response.content.decode()
    assert f">{environment.name}</a>" in content
    assert f">{other_environment.name}</a>" not in content
    assert viewer.username in content


def test_login_wrong_password_shows_form_again(client, viewer):
    response = client.post(
        "/accounts/login/", {"username": viewer.username, "password": "wrong"}
    )
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_logout_button_posts_to_portal_logout(client, viewer):
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert f'action="{reverse("logout")}"' in page
    assert "/admin/logout/" not in page

    response = client.post(reverse("logout"))
    assert response.status_code == 200
    assert SESSION_KEY not in client.session
    assert client.get("/").status_code == 302


# --- RQ dashboard ------------------------------------------------------------


@pytest.fixture
def staff(make_user, environment):
    return make_user("stella", Role.ADMIN, environment, is_staff=True)


@pytest.fixture
def superuser(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


def rq_views():
    """Return every view under /django-rq/, nested includes too."""
    (resolver,) = [p for p in portal_urls.urlpatterns if str(p.pattern) == "django-rq/"]
    views, todo = [], list(resolver.url_patterns)
    while todo:
        entry = todo.pop()
        if isinstance(entry, URLResolver):
            todo.extend(entry.url_patterns)
        else:
            assert isinstance(entry, URLPattern)
            views.append(entry)
    return views


def test_rq_dashboard_anonymous_redirects_to_login(client, redis_conn):
    response = client.get("/django-rq/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_rq_dashboard_staff_without_superuser_is_forbidden(client, redis_conn, staff):
    client.force_login(staff)
    assert client.get("/django-rq/").status_code == 403
    assert client.get("/django-rq/queues/0/").status_code == 403


def test_rq_dashboard_superuser_allowed(client, redis_conn, superuser):
    client.force_login(superuser)
    response = client.get("/django-rq/")
    assert response.status_code == 200
    assert b"default" in response.content
    assert client.get("/django-rq/queues/0/").status_code == 200


def test_rq_job_actions_refused_to_staff(client, redis_conn, staff):
    """Staff cannot delete or requeue a job, whatever their portal role."""
    import django_rq
    from rq import Queue

    # A plain rq queue: django-rq's own enqueues only once the test's
    # transaction commits.
    queue = Queue("default", connection=django_rq.get_connection("default"))
    job = queue.enqueue("builtins.print", "x")
    client.force_login(staff)
    for action in ("delete", "requeue"):
        url = f"/django-rq/queues/0/{job.id}/{action}/"
        assert client.post(url, {"post": "yes"}).status_code == 403
    assert queue.job_ids == [job.id]


def test_rq_every_view_refuses_staff(staff):
    views = rq_views()
    assert len(views) > 20
    request = RequestFactory().get("/django-rq/")
    request.user = staff
    for view in views:
        with pytest.raises(PermissionDenied):
            view.callback(request)


def test_password_reset_is_not_offered(client):
    """No outgoing mail is configured, so no reset form that would fail."""
    assert client.get("/accounts/password_reset/").status_code == 404

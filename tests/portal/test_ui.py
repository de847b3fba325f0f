"""The site's components: plans as tables, tones, the navigation and panel
registries, the dashboard, the error pages, DEBUG off by default."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse

from portal import navigation, panels
from portal.choices import Role
from portal.models import RoleAssignment
from portal.operations import request_operation
from portal.ui import exit_tone, render_data, tone
from portal.views import server_error

ROOT = Path(__file__).resolve().parents[2]


# -- render_data ------------------------------------------------------------------


def test_render_data_mapping_is_a_table_with_field_names_humanized_on_top():
    html = render_data({"dependency_stacks": {"core_db": 1}})
    assert (
        '<tr data-key="dependency_stacks"><th scope="row">Dependency stacks</th>'
        in (html)
    )
    # Deeper keys are names of things: shown as they are.
    assert '<th scope="row">core_db</th>' in html
    assert '<span class="data-number">1</span>' in html


def test_render_data_lists_become_chips_records_tables_and_steps():
    html = render_data(
        {
            "images": ["a", "b"],
            "networks": [{"name": "n1", "subnet": "10.0.0.0/24"}, {"name": "n2"}],
            "levels": [["postgres", "redis"], ["api"]],
        }
    )
    assert '<ul class="data-list chips"><li><span class="data-text">a</span>' in html
    assert '<th scope="col" data-key="subnet">Subnet</th>' in html
    assert '<td data-label="Name"><span class="data-text">n2</span></td>' in html
    assert '<ol class="data-list steps"><li><ul class="data-list chips">' in html


def test_render_data_redacts_secrets_and_escapes_text():
    html = render_data(
        {"environment": {"POSTGRES_PASSWORD": "hunter2", "NOTE": "<script>x</script>"}}
    )
    assert "hunter2" not in html and "********" in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_render_data_words_get_badges_by_meaning_and_long_text_a_pre():
    html = render_data({"postgres": "created", "redis": "failed", "flag": True})
    assert '<span class="badge tone-ok">created</span>' in html
    assert '<span class="badge tone-bad">failed</span>' in html
    assert '<span class="badge tone-ok">yes</span>' in html
    assert '<pre class="data-text">' in render_data("line one\nline two")


def test_render_data_deep_nesting_falls_back_to_json():
    deep = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}
    html = render_data(deep)
    assert '<pre class="data-json">' in html and "&quot;h&quot;: 1" in html


def test_tones_of_states_and_exit_codes():
    assert tone("running") == "ok" and tone("running", "operation") == "info"
    assert tone("created") == "ok" and tone("created", "container") == "warn"
    assert tone("unhealthy") == "bad" and tone("nonsense") == ""
    assert [exit_tone(c) for c in (0, 143, 137, 1, None)] == [
        "idle",
        "idle",
        "warn",
        "bad",
        "",
    ]


# -- registries ---------------------------------------------------------------------


@pytest.fixture
def request_factory():
    return RequestFactory()


def _user(django_user_model, name, **fields):
    return django_user_model.objects.create_user(name, password="pw", **fields)


@pytest.mark.django_db
def test_navigation_shows_entries_by_user_and_marks_the_current_one(
    request_factory, django_user_model
):
    request = request_factory.get("/environments/demo/")
    request.user = AnonymousUser()
    assert navigation.nav_items(request) == []
    request.user = _user(django_user_model, "olga")
    items = {i["name"]: i for i in navigation.nav_items(request)}
    assert list(items) == [
        "dashboard",
        "environments",
        "networks",
        "operations",
        "approvals",
    ]
    assert items["environments"]["current"] and not items["dashboard"]["current"]
    request.user = _user(django_user_model, "sam", is_staff=True)
    assert "admin" in [i["name"] for i in navigation.nav_items(request)]


@pytest.mark.django_db
def test_navigation_takes_entries_of_other_apps(request_factory, django_user_model):
    """An app adds an entry in its ready(); one whose URL does not resolve is
    left out rather than breaking every page."""
    try:
        navigation.register_nav("gpus", "GPUs", "portal:operation_list", order=22)
        navigation.register_nav("broken", "Broken", "nowhere:nothing", order=23)
        request = request_factory.get("/")
        request.user = _user(django_user_model, "olga")
        names = [i["name"] for i in navigation.nav_items(request)]
        assert names == [
            "dashboard",
            "environments",
            "gpus",
            "networks",
            "operations",
            "approvals",
        ]
    finally:
        navigation._items.pop("gpus")
        navigation._items.pop("broken")


@pytest.mark.django_db
def test_panels_registry_orders_panels_and_refuses_unknown_pages():
    calls = []

    def one(user, environments):
        calls.append("one")
        return panels.Panel("one.html")

    def none(user, environments):
        calls.append("none")

    try:
        panels.register_panel("zz-one", one, page="dashboard", order=1)
        panels.register_panel("aa-none", none, page="dashboard", order=2)
        found = panels.dashboard_panels(None, [])
        assert found[0].template == "one.html"
        assert calls[:2] == ["one", "none"]
    finally:
        panels._panels["dashboard"].pop("zz-one")
        panels._panels["dashboard"].pop("aa-none")
    with pytest.raises(ValueError, match="No page 'sidebar' takes panels"):
        panels.register_panel("x", one, page="sidebar")


# -- dashboard ------------------------------------------------------------------------


@pytest.fixture
def environments(db):
    from stacks.models import Environment

    return (
        Environment.objects.create(name="dash-a", docker_host="tcp://127.0.0.1:9"),
        Environment.objects.create(name="dash-b", docker_host="tcp://127.0.0.1:9"),
    )


def test_dashboard_anonymous_redirects_to_login(client, db):
    response = client.get(reverse("portal:dashboard"))
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_dashboard_without_role_says_so(client, django_user_model, environments):
    client.force_login(_user(django_user_model, "nobody"))
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert "No environment you may see yet" in html
    assert "dash-a" not in html


def test_dashboard_shows_only_the_environments_of_the_users_roles(
    client, django_user_model, environments, redis_conn
):
    """A viewer of dash-a sees dash-a's stacks (its engine unreachable, said
    so) and its operations; dash-b stays out of sight."""
    from stacks.models import Stack

    a, _b = environments
    viewer = _user(django_user_model, "vic")
    RoleAssignment.objects.create(user=viewer, role=Role.VIEWER, environment=a)
    operator = _user(django_user_model, "olga")
    RoleAssignment.objects.create(user=operator, role=Role.OPERATOR, environment=a)
    Stack.objects.create(name="core")
    operation = request_operation("host.check", user=operator, environment=a)
    client.force_login(viewer)
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert 'data-environment="dash-a"' in html
    assert 'data-environment="dash-b"' not in html
    assert 'data-field="error"' in html  # tcp://127.0.0.1:9 does not answer
    assert f'data-operation="{operation.pk}"' in html
    assert 'data-figure="queued"><strong>1</strong>' in html


# -- error pages and DEBUG -----------------------------------------------------------


def test_404_page_is_in_the_site_layout_without_the_url_list(client, db):
    response = client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'data-error-page="404"' in html and '<code data-field="path">' in html
    assert "URLconf" not in html and "operations/&lt;uuid" not in html


def test_500_page_is_in_the_layout_with_the_request(request_factory, django_user_model):
    request = request_factory.get("/")
    request.user = _user(django_user_model, "olga")
    response = server_error(request)
    html = response.content.decode()
    assert response.status_code == 500
    assert 'data-error-page="500"' in html and 'data-nav="dashboard"' in html


def test_500_page_without_a_database_still_answers(request_factory):
    """With no user (the database is down, say) the page is still served."""
    request = request_factory.get("/")
    html = server_error(request).content.decode()
    assert 'data-error-page="500"' in html


@pytest.mark.parametrize(
    "value, expected", [(None, "False"), ("true", "True"), ("false", "False")]
)
def test_debug_is_off_unless_asked_for(value, expected):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "PORTAL_PRODUCTION", "DJANGO_SETTINGS_MODULE")
    }
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    if value is not None:
        env["DEBUG"] = value
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DEBUG)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_csrf_failure_page_is_in_the_layout(django_user_model):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(_user(django_user_model, "olga"))
    response = client.post(reverse("portal:host_check"), {"env": "x"})
    html = response.content.decode()
    assert response.status_code == 403
    assert 'data-error-page="403"' in html
    assert "The form could not be checked" in html and "CSRF" in html

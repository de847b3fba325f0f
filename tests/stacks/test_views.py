"""Environment page, status JSON, logs page and stack buttons: the four
permission cases for each, then what the permitted user gets."""

import pytest
from django.urls import reverse

from tests.stacks.live import *  # noqa: F403

pytestmark = [pytest.mark.docker, pytest.mark.django_db]

SLEEP = "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"


@pytest.fixture
def world(make_environment, make_stack, make_service, make_user):
    env = make_environment("views")
    other = make_environment("views-other")
    web = make_stack("web", description="the web tier")
    make_service(web, "api")
    make_service(web, "worker")
    db = make_stack("data")
    make_service(db, "postgres")
    web.depends_on.add(db)
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "operator": make_user("operator", "operator", env),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, web, users


def _urls(env, stack):
    return {
        "page": reverse("stacks:environment_detail", args=[env.name]),
        "status": reverse("stacks:environment_status", args=[env.name]),
        "logs": reverse("stacks:stack_logs", args=[env.name, stack.name]),
    }


GET_VIEWS = ["page", "status", "logs"]
ACTIONS = ["start", "stop", "restart"]


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_anonymous_redirects_to_login(client, world, view):
    """Anonymous users are sent to the login page."""
    env, web, _ = world
    response = client.get(_urls(env, web)[view])
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_without_role_forbidden(client, world, view):
    """A user with no role on any environment gets 403."""
    env, web, users = world
    client.force_login(users["nobody"])
    assert client.get(_urls(env, web)[view]).status_code == 403


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_with_role_on_other_environment_forbidden(client, world, view):
    """A role on another environment does not open this one."""
    env, web, users = world
    client.force_login(users["elsewhere"])
    assert client.get(_urls(env, web)[view]).status_code == 403


@pytest.mark.parametrize("view", GET_VIEWS)
def test_get_view_with_viewer_role_ok(client, world, view):
    """A viewer of the environment sees the page."""
    env, web, users = world
    client.force_login(users["viewer"])
    assert client.get(_urls(env, web)[view]).status_code == 200


def test_environment_page_shows_live_state(
    client, world, make_container, django_assert_max_num_queries
):
    """The page lists every stack and service with its state, and polls the
    status JSON."""
    env, web, users = world
    make_container(env, web, "api", SLEEP, ports={"8080/tcp": ("127.0.0.1", None)})
    client.force_login(users["viewer"])
    # 10, one for the newest health probe of each service, and each registered
    # panel's few queries (the backups panel: one, this environment keeps no
    # backups; the retention panel: four, its settings, its last run with
    # the run's totals, the bytes freed in 30 days).
    with django_assert_max_num_queries(16):
        response = client.get(_urls(env, web)["page"])
    html = response.content.decode()
    assert 'data-stack="web"' in html and 'data-stack="data"' in html
    assert 'data-service="api"' in html and 'data-service="postgres"' in html
    assert 'class="state-running" data-field="state">running<' in html
    assert 'class="state-missing" data-field="state">missing<' in html
    assert "-&gt;8080/tcp" in html
    assert _urls(env, web)["status"] in html
    assert "js/environment_status.js" in html


def test_environment_page_buttons_follow_role(client, world):
    """Start/stop/restart forms appear only for users who may use them."""
    env, web, users = world
    stop_url = reverse("stacks:stack_stop", args=[env.name, web.name])
    client.force_login(users["viewer"])
    assert stop_url not in client.get(_urls(env, web)["page"]).content.decode()
    client.force_login(users["operator"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    for action in ACTIONS:
        assert reverse(f"stacks:stack_{action}", args=[env.name, web.name]) in html
    assert 'data-confirm="Stop web in' in html


def test_environment_status_json(client, world, make_container):
    """The JSON endpoint returns the state of every configured service."""
    env, web, users = world
    make_container(env, web, "worker", "echo bye; exit 2").wait(timeout=20)
    client.force_login(users["viewer"])
    response = client.get(_urls(env, web)["status"])
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    stacks = {s["name"]: s for s in data["stacks"]}
    services = {s["name"]: s for s in stacks["web"]["services"]}
    assert data["environment"] == env.name
    assert services["worker"]["state"] == "exited"
    assert services["worker"]["exit_code"] == 2
    assert services["api"]["state"] == "missing"
    assert stacks["data"]["state"] == "missing"


def test_stack_logs_page(client, world):
    """The logs page names the WebSocket path and one checkbox per service."""
    env, web, users = world
    client.force_login(users["viewer"])
    html = client.get(_urls(env, web)["logs"]).content.decode()
    assert f'data-ws-path="/ws/logs/{env.name}/web/"' in html
    assert 'value="api" checked' in html and 'value="worker" checked' in html
    assert "js/container_logs.js" in html
    html = client.get(_urls(env, web)["logs"] + "?service=worker").content.decode()
    assert f'data-ws-path="/ws/logs/{env.name}/web/worker/"' in html
    assert 'value="api"' not in html


def test_stack_logs_page_unknown_stack(client, world):
    env, _, users = world
    client.force_login(users["viewer"])
    url = reverse("stacks:stack_logs", args=[env.name, "nope"])
    assert client.get(url).status_code == 404


# -- POST start/stop/restart ---------------------------------------------------


def _action_url(env, stack, action):
    return reverse(f"stacks:stack_{action}", args=[env.name, stack.name])


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_anonymous_redirects_to_login(client, world, action):
    env, web, _ = world
    response = client.post(_action_url(env, web, action))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_viewer_forbidden(client, world, action):
    """Viewing is not operating."""
    env, web, users = world
    client.force_login(users["viewer"])
    assert client.post(_action_url(env, web, action)).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_without_role_forbidden(client, world, action):
    env, web, users = world
    client.force_login(users["nobody"])
    assert client.post(_action_url(env, web, action)).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_operator_of_other_environment_forbidden(client, world, action):
    env, web, users = world
    client.force_login(users["elsewhere"])
    assert client.post(_action_url(env, web, action)).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_get_not_allowed(client, world, action):
    env, web, users = world
    client.force_login(users["operator"])
    assert client.get(_action_url(env, web, action)).status_code == 405


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_operator_queues_operation(client, world, action, redis_conn):
    """An operator's POST creates the operation and lands on its page."""
    from portal.models import Operation

    env, web, users = world
    client.force_login(users["operator"])
    response = client.post(_action_url(env, web, action))
    operation = Operation.objects.get()
    assert response.status_code == 302
    assert response.url == operation.get_absolute_url()
    assert operation.requested_by == users["operator"]
    assert action in operation.kind


def test_stack_start_with_dependencies_box(client, world, redis_conn):
    """Ticking "with dependencies" asks for a start of the stacks it depends
    on first; the box is offered only where there are some."""
    from portal.models import Operation

    env, web, users = world
    client.force_login(users["operator"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    assert html.count('name="with_dependencies"') == 1  # web, not data
    start = html.index(_action_url(env, web, "start"))
    assert html.index('name="with_dependencies"', start) < html.index("</form>", start)

    response = client.post(_action_url(env, web, "start"), {"with_dependencies": "1"})
    operation = Operation.objects.get()
    assert response.url == operation.get_absolute_url()
    assert operation.parameters == {"with_dependencies": True}
    assert operation.plan["with_dependencies"] is True


def test_stack_start_without_dependencies_box(client, world, redis_conn):
    from portal.models import Operation

    env, web, users = world
    client.force_login(users["operator"])
    client.post(_action_url(env, web, "start"))
    assert Operation.objects.get().parameters == {}

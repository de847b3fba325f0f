"""Environment page, status JSON, logs and impact pages, and the stack and
service buttons: the four permission cases for each, then what the
permitted user gets."""

import re

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
        "impact": reverse("stacks:stack_impact", args=[env.name, stack.name]),
    }


GET_VIEWS = ["page", "status", "logs", "impact"]
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
    # 10, one for the newest health probe of each service, 6 for the
    # credential check (services, their dependencies, overrides, environments,
    # backup policy, tiers: none per service), and each registered panel's few
    # queries (the backups panel: one, this environment keeps no backups; the
    # retention panel: four, its settings, its last run with the run's totals,
    # the bytes freed in 30 days).
    with django_assert_max_num_queries(22):
        response = client.get(_urls(env, web)["page"])
    html = response.content.decode()
    assert 'data-stack="web"' in html and 'data-stack="data"' in html
    assert 'data-service="api"' in html and 'data-service="postgres"' in html
    assert 'class="badge tone-ok state-running" data-field="state">running<' in html
    assert 'class="badge tone-idle state-missing" data-field="state">missing<' in html
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


def _forms(html):
    """Return {action URL: whether its form is hidden} of the page's forms."""
    found = {}
    for tag in re.findall(r"<form [^>]*>", html):
        action = re.search(r'action="([^"]+)"', tag)
        if action:
            found[action.group(1)] = bool(re.search(r"\shidden(?=[\s>])", tag))
    return found


def test_environment_page_buttons_follow_state(client, world, make_container):
    """Start shows on a stack that is missing; Stop and Restart stay hidden
    until it runs, and each service row offers what fits its own state."""
    env, web, users = world
    client.force_login(users["operator"])
    forms = _forms(client.get(_urls(env, web)["page"]).content.decode())
    assert forms[_action_url(env, web, "start")] is False
    assert forms[_action_url(env, web, "stop")] is True
    assert forms[_action_url(env, web, "restart")] is True
    assert forms[_service_url(env, web, "api", "start")] is False
    assert forms[_service_url(env, web, "api", "stop")] is True

    make_container(env, web, "api", SLEEP)
    make_container(env, web, "worker", SLEEP)
    html = client.get(_urls(env, web)["page"]).content.decode()
    forms = _forms(html)
    assert forms[_action_url(env, web, "start")] is True
    assert forms[_action_url(env, web, "stop")] is False
    assert forms[_action_url(env, web, "restart")] is False
    assert forms[_service_url(env, web, "api", "start")] is True
    assert forms[_service_url(env, web, "api", "restart")] is False
    # The states each form belongs to, for the page's live script.
    assert 'data-action="start" data-when="stopped missing partial"' in html
    assert 'data-action="start" data-when="exited created dead missing"' in html


def test_environment_page_viewer_sees_no_action_forms(client, world, make_container):
    """A viewer gets the state and the links, and no form that changes
    anything."""
    env, web, users = world
    make_container(env, web, "api", SLEEP)
    client.force_login(users["viewer"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    assert [url for url in _forms(html) if "/stacks/" in url] == []
    assert 'data-link="logs"' in html and 'data-link="stats"' in html
    assert 'data-link="console"' not in html


def test_environment_page_colours_exit_codes_by_meaning(client, world, make_container):
    """A clean exit is grey, a failed one red; both say their code."""
    env, web, users = world
    make_container(env, web, "api", "exit 0").wait(timeout=20)
    make_container(env, web, "worker", "exit 3").wait(timeout=20)
    client.force_login(users["viewer"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    rows = {
        name: html[html.index(f'data-service="{name}"') :].split("</tr>")[0]
        for name in ("api", "worker")
    }
    assert 'class="badge tone-idle state-exited"' in rows["api"]
    assert 'class="exit tone-idle" data-field="exit"' in rows["api"]
    assert ">exit 0<" in rows["api"]
    assert 'class="badge tone-bad state-exited"' in rows["worker"]
    assert 'class="exit tone-bad" data-field="exit"' in rows["worker"]
    assert "tone-bad" not in rows["api"]


def test_environment_page_opens_only_stacks_that_need_a_look(
    client, world, make_container
):
    """A partial stack's card is open; a missing one is folded."""
    env, web, users = world
    make_container(env, web, "api", SLEEP)
    client.force_login(users["viewer"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    assert re.search(r'<details class="stack-card" data-stack="web" [^>]*\sopen>', html)
    assert re.search(r'<details class="stack-card" data-stack="data" [^>]*"\s*>', html)


def test_environment_status_json_lists_active_operations(client, world, redis_conn):
    """The status names the operations waiting or running on each stack."""
    env, web, users = world
    client.force_login(users["operator"])
    client.post(_service_url(env, web, "api", "restart"))
    data = client.get(_urls(env, web)["status"]).json()
    [op] = data["operations"]
    assert (op["kind"], op["stack"], op["service"]) == ("stack.restart", "web", "api")
    assert op["status"] == "queued" and op["url"].startswith("/operations/")


def test_stack_impact_names_dependents(client, world, make_container):
    """Stopping data hits web, which depends on it; the answer comes as JSON
    for the confirm dialog, as a fragment for the card, or as a page."""
    env, web, users = world
    data = web.depends_on.get()
    api = web.services.get(name="api")
    api.depends_on.add(data.services.get(name="postgres"))
    make_container(env, web, "api", SLEEP)
    client.force_login(users["viewer"])
    url = reverse("stacks:stack_impact", args=[env.name, data.name])
    answer = client.get(url, HTTP_ACCEPT="application/json").json()
    assert answer["stops"] == ["postgres"]
    assert answer["dependent_stacks"] == ["web"]
    assert answer["dependents"] == [
        {"stack": "web", "service": "api", "depends_on": ["postgres"], "running": True}
    ]
    assert "web/api (running) needs postgres" in answer["text"]
    fragment = client.get(url, HTTP_X_FRAGMENT="1").content.decode()
    assert "<html" not in fragment and "web/api needs postgres" in fragment
    page = client.get(url).content.decode()
    assert "<html" in page and "Impact of stopping data" in page


# -- POST start/stop/restart ---------------------------------------------------


def _action_url(env, stack, action):
    return reverse(f"stacks:stack_{action}", args=[env.name, stack.name])


def _service_url(env, stack, service, action):
    return reverse(f"stacks:service_{action}", args=[env.name, stack.name, service])


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_anonymous_redirects_to_login(client, world, action):
    env, web, _ = world
    response = client.post(_action_url(env, web, action))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("action", ACTIONS)
def test_stack_action_viewer_forbidden(client, world, action):
    """Viewing is not operating; the 403 page says why, in the site's layout."""
    env, web, users = world
    client.force_login(users["viewer"])
    response = client.post(_action_url(env, web, action))
    assert response.status_code == 403
    html = response.content.decode()
    assert f"viewer may not {action} in environment {env.name}." in html
    assert 'data-error-page="403"' in html and 'data-nav="dashboard"' in html


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


# -- POST start/stop/restart of one service -----------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_service_action_anonymous_redirects_to_login(client, world, action):
    env, web, _ = world
    response = client.post(_service_url(env, web, "api", action))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("action", ACTIONS)
def test_service_action_without_role_forbidden(client, world, action):
    env, web, users = world
    client.force_login(users["nobody"])
    assert client.post(_service_url(env, web, "api", action)).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_service_action_operator_of_other_environment_forbidden(client, world, action):
    env, web, users = world
    client.force_login(users["elsewhere"])
    assert client.post(_service_url(env, web, "api", action)).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_service_action_operator_queues_service_operation(
    client, world, action, redis_conn
):
    """One service alone: the operation names it, plans it, and is audited
    with it, through the same request path as a stack operation."""
    from portal.models import AuditEntry, Operation

    env, web, users = world
    client.force_login(users["operator"])
    response = client.post(_service_url(env, web, "worker", action))
    operation = Operation.objects.get()
    assert response.url == operation.get_absolute_url()
    assert operation.kind == f"stack.{action}"
    assert (operation.stack, operation.service.name) == (web, "worker")
    if action != "stop":
        assert operation.plan["services"] == ["worker"]
    else:
        assert operation.plan["blast_radius"]["stops"] == ["worker"]
    entry = AuditEntry.objects.get(action="operation.requested")
    assert entry.data["service"] == "worker"
    assert entry.actor == users["operator"]
    # The message is tagged with the operation, so its page can drop it.
    page = client.get(response.url).content.decode()
    assert f'class="op-{operation.pk} success"' in page


def test_service_action_unknown_service_not_found(client, world):
    env, web, users = world
    client.force_login(users["operator"])
    assert client.post(_service_url(env, web, "nope", "start")).status_code == 404
    # A service of another stack is not one of this stack's.
    assert client.post(_service_url(env, web, "postgres", "start")).status_code == 404

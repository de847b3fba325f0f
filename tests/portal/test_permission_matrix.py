"""The permission matrix: every URL, admin action, WebSocket route and
operation command, for each role, on two environments. Nobody gets more
than their role gives on the environment it is granted on, and nothing at
all on the other one.

URLs are found by walking the URL configuration, so a new page is in the
matrix as soon as it exists; a new POST endpoint must be given its verb in
``POST_VERBS`` (the test says so) before it passes.
"""

import asyncio
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from portal.asgi import application
from portal.choices import ROLE_VERBS, OperationStatus, Role, Verb
from portal.models import Operation, RoleAssignment
from portal.operations import request_operation
from portal.permissions import user_can
from stacks.config import import_configs
from stacks.models import Environment, ServiceOverride
from tests.websockets import Communicator

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = [None, Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN]

# The verb each POST endpoint needs (by URL name; a (name, action) pair for
# one view serving several verbs).
POST_VERBS = {
    "host_check": Verb.CHECK,
    "operation_cancel": Verb.CANCEL,
    "operation_approve": Verb.APPROVE,
    "stack_start": Verb.START,
    "stack_stop": Verb.STOP,
    "stack_restart": Verb.RESTART,
    "service_start": Verb.START,
    "service_stop": Verb.STOP,
    "service_restart": Verb.RESTART,
    "wipe": Verb.WIPE,
    ("network_action", "conflicts"): Verb.CHECK,
    ("network_action", "validate"): Verb.CHECK,
    ("network_action", "health"): Verb.CHECK,
    ("network_action", "orphans"): Verb.CLEANUP,
    ("network_action", "cleanup"): Verb.CLEANUP,
    "backup_service": Verb.BACKUP,
    "backup_environment": Verb.BACKUP,
    "verify_environment": Verb.CHECK,
    "record_drill": Verb.CHECK,
    "record_restore": Verb.RESTORE,
    "cleanup": Verb.CLEANUP,
}
# Pages outside any environment: they must not show what the user may not
# see (the other environment's name).
GLOBAL_PAGES = {
    "dashboard",
    "operation_list",
    "approval_list",
    "environment_list",
    "network_map",
}
SKIPPED = {"login", "logout", "metrics"}


def walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            route = str(entry.pattern)
            if route.startswith(("admin/", "django-rq/")):
                continue
            yield from walk(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


ROUTES = sorted(set(walk(get_resolver().url_patterns)))


@pytest.fixture
def world(db, settings):
    import_configs()
    demo = Environment.objects.get(name="demo")
    envs = []
    for name in ("matrix-granted", "matrix-elsewhere"):
        env = Environment.objects.create(
            name=name,
            docker_host=demo.docker_host,
            gpu_enabled=False,
            settings=demo.settings,
            protected=name.endswith("elsewhere"),
        )
        for override in demo.service_overrides.all():
            ServiceOverride.objects.create(
                environment=env, service=override.service, values=override.values
            )
        envs.append(env)
    granted, elsewhere = envs
    user_model = get_user_model()
    users = {}
    for role in ROLES:
        user = user_model.objects.create_user(f"matrix-{role or 'none'}", is_staff=True)
        if role:
            RoleAssignment.objects.create(user=user, environment=granted, role=role)
        users[role] = user
    root = user_model.objects.create_superuser("matrix-root")
    operations = {
        env.name: request_operation(
            "host.check", user=root, environment=env, enqueue=False
        )
        for env in envs
    }
    return granted, elsewhere, users, operations


def fill(route, env, operation):
    """Return the path of ``route`` for ``env``, or None if it cannot be
    filled."""
    path = route
    values = {
        "<str:name>": env.name,
        "<str:stack>": "core",
        "<str:service>": "postgres",
        "<uuid:pk>": str(operation.pk),
        "<int:pk>": "999999",
    }
    for key, value in values.items():
        path = path.replace(key, value)
    return None if "<" in path else "/" + path


def expected_verb(name, path):
    if name in POST_VERBS:
        return POST_VERBS[name]
    for key, verb in POST_VERBS.items():
        if (
            isinstance(key, tuple)
            and key[0] == name
            and path.rstrip("/").endswith("/" + key[1])
        ):
            return verb
    return None


def paths_of(route, env, operation):
    if "<str:action>" in route:
        return [
            fill(route.replace("<str:action>", key[1]), env, operation)
            for key in POST_VERBS
            if isinstance(key, tuple)
        ]
    path = fill(route, env, operation)
    return [path] if path else []


def env_scoped(route):
    return "<str:name>" in route or "<uuid:pk>" in route or "<int:pk>" in route


def test_every_route_is_in_the_matrix(world, redis_conn):
    """A page outside an environment is listed; a POST endpoint has a verb."""
    granted, _elsewhere, users, operations = world
    client = Client()
    client.force_login(users[Role.ADMIN])
    for route, name in ROUTES:
        if name in SKIPPED:
            continue
        if not env_scoped(route):
            assert name in GLOBAL_PAGES or name in POST_VERBS, (
                f"{route} ({name}) takes no environment: add it to GLOBAL_PAGES "
                "(and check what it shows) or to POST_VERBS"
            )
            continue
        for path in paths_of(route, granted, operations[granted.name]):
            if client.get(path).status_code == 405:
                assert expected_verb(name, path), (
                    f"POST endpoint {path} ({name}) has no verb in POST_VERBS"
                )


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "none")
def test_nothing_at_all_on_the_other_environment(world, role, redis_conn):
    _granted, elsewhere, users, operations = world
    client = Client()
    client.force_login(users[role])
    before = Operation.objects.count()
    for route, name in ROUTES:
        if name in SKIPPED or not env_scoped(route):
            continue
        for path in paths_of(route, elsewhere, operations[elsewhere.name]):
            for method in ("get", "post"):
                response = getattr(client, method)(path)
                assert response.status_code in (403, 404, 405), (
                    f"{role} {method.upper()} {path}: {response.status_code}"
                )
    response = client.post("/operations/host-check/", {"env": elsewhere.name})
    assert response.status_code == 403
    assert Operation.objects.count() == before
    for name in GLOBAL_PAGES:
        route = next(r for r, n in ROUTES if n == name)
        response = client.get("/" + route)
        assert response.status_code == 200, (name, response.status_code)
        assert elsewhere.name not in response.content.decode(), (
            f"{name} shows {elsewhere.name} to {role}"
        )


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "none")
def test_exactly_the_role_on_its_environment(world, role, redis_conn):
    granted, _elsewhere, users, operations = world
    user = users[role]
    client = Client()
    client.force_login(user)
    for route, name in ROUTES:
        if name in SKIPPED or not env_scoped(route):
            continue
        for path in paths_of(route, granted, operations[granted.name]):
            response = client.get(path)
            if response.status_code == 404:
                continue  # no such object (the record 999999): nothing to see
            if response.status_code != 405:
                viewing = user_can(user, Verb.VIEW, granted)
                if name == "wipe":
                    viewing = user_can(user, Verb.WIPE, granted)
                if name == "service_console":
                    viewing = user_can(user, Verb.ADMIN, granted)
                assert (response.status_code == 403) == (not viewing), (
                    f"{role} GET {path}: {response.status_code}"
                )
                continue
            verb = expected_verb(name, path)
            response = client.post(path, {"reason": "matrix", "decision": "reject"})
            allowed = user_can(user, verb, granted)
            assert (response.status_code == 403) == (not allowed), (
                f"{role} POST {path} (needs {verb}): {response.status_code}"
            )


def test_roles_give_what_the_table_says(world):
    granted, elsewhere, users, _operations = world
    for role in ROLES:
        for verb in Verb:
            expected = role is not None and verb in ROLE_VERBS[role]
            assert user_can(users[role], verb, granted) == expected, (role, verb)
            assert not user_can(users[role], verb, elsewhere), (role, verb)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "none")
def test_admin_actions_refuse_the_other_environment(world, role, redis_conn):
    _granted, elsewhere, users, operations = world
    target = operations[elsewhere.name]
    client = Client()
    client.force_login(users[role])
    for action in ("cancel_selected", "approve_selected", "reject_selected"):
        client.post(
            "/admin/portal/operation/",
            {"action": action, "_selected_action": [str(target.pk)], "reason": "x"},
        )
        target.refresh_from_db()
        assert target.status == OperationStatus.QUEUED, (role, action)
        assert not target.cancel_requested


def ws_refused(path, user):
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    async def talk():
        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        ]
        comm = Communicator(application, path, headers=headers)
        try:
            connected, code = await comm.connect(timeout=10)
            if connected:
                # Some consumers accept, say why, then close.
                frame = await comm.receive_output(timeout=10)
                while frame.get("type") == "websocket.send":
                    frame = await comm.receive_output(timeout=10)
                code = frame.get("code")
        finally:
            # Let the consumer finish as it does when a browser goes away,
            # instead of leaving its task (and its channel layer receive) to
            # asyncio.run's cancellation.
            await comm.send_input({"type": "websocket.disconnect", "code": 1000})
            await comm.wait(timeout=2)
        return code

    return asyncio.run(talk())


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "none")
def test_websockets_refuse_the_other_environment(world, role, redis_conn):
    _granted, elsewhere, users, operations = world
    for path in (
        f"/ws/operations/{operations[elsewhere.name].pk}/",
        f"/ws/logs/{elsewhere.name}/core/",
        f"/ws/logs/{elsewhere.name}/core/postgres/",
        f"/ws/gpu/{elsewhere.name}/",
        f"/ws/console/{elsewhere.name}/core/postgres/",
    ):
        code = ws_refused(path, users[role])
        assert code in (4401, 4403, 4404), (role, path, code)


COMMANDS = [
    ["stack", "start", "core", "--env", "{env}"],
    ["stack", "status", "core", "--env", "{env}"],
    ["check_host", "--env", "{env}"],
    ["backup", "full", "--env", "{env}"],
    ["backup", "status", "--env", "{env}"],
    ["backup", "verify", "--env", "{env}"],
    ["backup", "drill", "--env", "{env}", "--service", "postgres"],
    ["backup", "restore", "--env", "{env}", "--service", "postgres", "--record", "1"],
    ["retention", "test", "--env", "{env}"],
    ["retention", "cleanup", "--env", "{env}"],
    ["wipe", "data", "db", "--env", "{env}", "--confirm", "{env}/db"],
    ["wipe", "stack", "core", "--env", "{env}"],
    ["approve_operation", "{op}"],
    ["approve_operation", "{op}", "--reject", "--reason", "x"],
    ["cancel_operation", "{op}"],
    ["check_network_conflicts", "--env", "{env}"],
    ["cleanup_networks", "--env", "{env}", "--dry-run"],
]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "none")
def test_commands_refuse_the_other_environment(world, role, redis_conn):
    _granted, elsewhere, users, operations = world
    before = Operation.objects.count()
    for command in COMMANDS:
        argv = [
            part.format(env=elsewhere.name, op=operations[elsewhere.name].pk)
            for part in command
        ]
        with pytest.raises(CommandError, match="may not"):
            call_command(
                *argv,
                "--user",
                users[role].username,
                stdout=StringIO(),
                stderr=StringIO(),
            )
    assert Operation.objects.count() == before
    operation = operations[elsewhere.name]
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED and not operation.cancel_requested

"""Expected failures end cleanly: commands in a CommandError that says what is
wrong, runners in *failed* with the reason in ``error``.

The Docker engine is made unreachable by pointing an environment's
``docker_host`` at a socket or port where nothing listens.
"""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.choices import OperationStatus
from portal.models import Operation
from portal.operations import run_inline
from stacks import operations
from tests.stacks.live import *  # noqa: F403

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE = ["unix:///nonexistent.sock", "tcp://127.0.0.1:1"]
UNSET = "PORTAL_TEST_UNSET_PORT"


@pytest.fixture
def world(redis_conn, make_environment, make_stack, make_service, make_user):
    env = make_environment("errors")
    web = make_stack("web")
    make_service(web, "api")
    operator = make_user("operator", "operator", env)
    return env, web, operator


def command(*args, user):
    out = StringIO()
    call_command(*args, "--user", user.username, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.parametrize("host", UNREACHABLE)
@pytest.mark.parametrize("action", ["status", "logs"])
def test_stack_command_unreachable_docker_is_a_command_error(world, host, action):
    """status and logs name the environment and its Docker host."""
    env, web, operator = world
    env.docker_host = host
    env.save()
    with pytest.raises(CommandError) as excinfo:
        command("stack", action, "web", "--env", env.name, user=operator)
    message = str(excinfo.value)
    assert f"Cannot reach the Docker host {host} of environment {env.name}" in message
    assert not Operation.objects.exists()


@pytest.mark.parametrize("kind", ["stack.start", "stack.stop", "stack.restart"])
def test_run_operation_unreachable_docker_fails_the_operation(world, kind):
    """An EngineError inside a runner (here: no engine) gives *failed*, not
    *errored*, with its message as the error."""
    env, web, operator = world
    env.docker_host = "tcp://127.0.0.1:1"
    env.save()
    request = getattr(operations, f"{kind.split('.')[1]}_stack")
    operation = run_inline(request(env, web, user=operator, enqueue=False))
    assert operation.status == OperationStatus.FAILED
    assert operation.error.startswith(
        f"Cannot reach the Docker host tcp://127.0.0.1:1 of environment {env.name}: "
    )
    assert "Traceback" not in operation.error
    last = operation.lines.order_by("-seq").first()
    assert (last.level, last.text) == ("error", operation.error)


@pytest.mark.parametrize(
    "argv",
    [
        ["stack", "start", "web"],
        ["stack", "restart", "web"],
        ["run_operation", "stack.start", "--stack", "web"],
    ],
    ids=["stack-start", "stack-restart", "run_operation"],
)
def test_plan_error_is_a_command_error(world, make_service, argv):
    """A plan that cannot be computed (an unset port variable) is refused
    with the variable and the service named, and no operation is created."""
    env, web, operator = world
    make_service(web, "proxy", ports=[f"${{{UNSET}}}:8080"])
    with pytest.raises(CommandError) as excinfo:
        command(*argv, "--env", env.name, user=operator)
    assert str(excinfo.value) == (
        f"Configuration of stack web in {env.name}: variable {UNSET} is not set "
        "(service proxy) and the reference has no default"
    )
    assert not Operation.objects.exists()

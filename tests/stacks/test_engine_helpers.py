"""Helper containers run as an attached program: output streamed, input fed
through the attached connection, the helper gone afterwards."""

import json

import pytest

from stacks import engine
from tests.conftest import RUN_ID, TEST_LABEL

pytestmark = pytest.mark.docker

# Reads one line (a secret), reports only its length, then writes a lot of
# output and a line of stderr, and fails with a code of its own.
READ_AND_REPORT = (
    'read -r line; echo "length ${#line}"; seq 1 50000; echo "it failed" >&2; exit 4'
)


@pytest.fixture
def env():
    return type("E", (), {"name": f"t{RUN_ID}", "settings": {}})()


def test_helper_stream_feeds_stdin_streams_stdout_and_keeps_the_secret_out_of_inspect(
    docker_client, env, settings
):
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    secret = f"s3cret-{RUN_ID}"
    with engine.helper_stream(
        docker_client,
        ["sh", "-c", READ_AND_REPORT],
        environment=env,
        purpose="stream.test",
        owner="op-7",
        stdin=[secret.encode() + b"\n"],
        name=f"portal-stream-{RUN_ID}",
        hostname=f"portal-stream-{RUN_ID}",
    ) as run:
        (helper,) = engine.list_helpers(docker_client, purpose="stream.test")
        inspected = json.dumps(docker_client.api.inspect_container(helper["Id"]))
        out = b"".join(run)
    assert secret not in inspected
    assert helper["Names"] == [f"/portal-stream-{RUN_ID}"]
    lines = out.decode().splitlines()
    assert lines[0] == f"length {len(secret)}"
    assert lines[1:] == [str(i) for i in range(1, 50001)]
    assert run.result.exit_code == 4
    assert run.result.stderr_text() == "it failed"
    assert engine.list_helpers(docker_client, purpose="stream.test") == []


def test_helper_stream_without_stdin_gives_the_exit_code(docker_client, env, settings):
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    with engine.helper_stream(
        docker_client,
        ["sh", "-c", "hostname; exit 0"],
        environment=env,
        purpose="stream.test",
        hostname="portal-restic-probe",
    ) as run:
        out = b"".join(run)
    assert out == b"portal-restic-probe\n"
    assert run.result.ok


def test_helper_stream_left_early_removes_the_running_helper(
    docker_client, env, settings
):
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    with engine.helper_stream(
        docker_client,
        ["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
        environment=env,
        purpose="stream.test",
    ) as run:
        first = next(iter(run))
    assert first.startswith(b"tick")
    assert engine.list_helpers(docker_client, purpose="stream.test") == []

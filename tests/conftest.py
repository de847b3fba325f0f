"""Fixtures shared by every test: real Redis, real Docker, real RQ workers.

Nothing here replaces the portal's own code. Redis is the server started by
scripts/setup.sh (database PORTAL_TEST_REDIS_URL, flushed around each test);
Docker is the local engine, and every object a test creates carries the label
``portal.test=<run id>`` so teardown removes it even when the test fails.
"""

import os
import uuid

import docker
import pytest
import redis
from docker.errors import APIError, NotFound

# The session-wide leak check: planted secret values must appear in no log,
# operation log, page, export or error page of the whole run (see the module).
pytest_plugins = ("tests.leakcheck",)

TEST_REDIS_URL = os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
RUN_ID = uuid.uuid4().hex[:10]
TEST_LABEL = "portal.test"


def pytest_sessionstart(session):
    """Remove the WAL files a killed earlier run of this pid left behind.

    The test database (``.state/test-<pid>.sqlite3``, tests/settings.py) is
    in WAL mode, and Django recreates only the database file: SQLite would
    replay a stale ``-wal`` next to it into the new database.
    """
    path = os.environ.get("PORTAL_TEST_DB")
    if path:
        for suffix in ("-wal", "-shm"):
            try:
                os.remove(path + suffix)
            except FileNotFoundError:
                pass


@pytest.fixture(scope="session")
def redis_url():
    """Return the URL of the test Redis database, refusing a non-empty one."""
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    conn.ping()
    # Keys left by an earlier, interrupted run of this suite are ours to
    # drop; anything else means the database belongs to someone else.
    foreign = [k for k in conn.scan_iter(count=1000) if not _ours(k)]
    if foreign:
        pytest.exit(
            f"Redis database {TEST_REDIS_URL} holds {len(foreign)} keys that are "
            "not the test suite's; point PORTAL_TEST_REDIS_URL at an empty one.",
            returncode=2,
        )
    return TEST_REDIS_URL


def _ours(key):
    return key.startswith((b"rq:", b"portal-test", b"asgi", b"portal:"))


@pytest.fixture
def redis_conn(redis_url):
    """Yield a client of the test Redis database, flushed before and after."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Give each test its own channel layer instance.

    channels_redis keeps receive state (a lock, a count of receivers, the
    loop they run in) on the layer object; each async test runs in its own
    event loop, and a consumer a test leaves connected would otherwise keep
    that state for the next test's loop.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def docker_session_client():
    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"Docker engine not reachable: {exc}", returncode=2)
    yield client
    _remove_labelled(client, f"{TEST_LABEL}={RUN_ID}")
    client.close()


@pytest.fixture
def docker_labels():
    """Return the labels every object a test creates must carry."""
    return {TEST_LABEL: RUN_ID}


@pytest.fixture
def docker_client(docker_session_client, docker_labels):
    """Yield a Docker client; remove what the test labelled afterwards."""
    yield docker_session_client
    _remove_labelled(docker_session_client, f"{TEST_LABEL}={RUN_ID}")


def _remove_labelled(client, label):
    """Remove containers, then networks, then volumes carrying ``label``."""
    for container in client.containers.list(all=True, filters={"label": label}):
        try:
            container.remove(v=True, force=True)
        except (APIError, NotFound):
            pass
    for network in client.networks.list(filters={"label": label}):
        try:
            network.remove()
        except (APIError, NotFound):
            pass
    for volume in client.volumes.list(filters={"label": label}):
        try:
            volume.remove(force=True)
        except (APIError, NotFound):
            pass


@pytest.fixture
def run_jobs(redis_conn):
    """Return a function that runs queued jobs in a non-forking burst worker."""
    import django_rq
    from rq import SimpleWorker

    def run(*queues):
        worker = django_rq.get_worker(
            *(queues or ("default", "long")), worker_class=SimpleWorker
        )
        worker.work(burst=True)
        return worker

    return run


@pytest.fixture
def worker_process(redis_conn, tmp_path):
    """Return a function starting a real worker process (``manage.py run_worker``).

    The worker shares the test's SQLite file and Redis database; call it
    from ``@pytest.mark.django_db(transaction=True)`` tests so it sees the
    rows. Each call waits until the worker has registered in Redis and
    returns its ``Popen`` (with ``.name`` and ``.log_path``). Teardown
    kills every worker with SIGKILL (work horses die with their worker).
    """
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    root = Path(__file__).resolve().parent.parent
    started = []

    def start(
        *,
        kind="default",
        name=None,
        imports=("tests.portal.runners",),
        reap_interval=1,
        extra_args=(),
        environ=None,
    ):
        name = name or f"test-{RUN_ID}-{len(started) + 1}"
        log_path = tmp_path / f"{name}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PORTAL_TEST_DB": str(connection.settings_dict["NAME"]),
            "PORTAL_TEST_REDIS_URL": TEST_REDIS_URL,
            "REDIS_URL": settings.REDIS_URL,
            "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
            **(environ or {}),
        }
        argv = [sys.executable, "manage.py", "run_worker", "--name", name]
        if kind:
            argv += ["--kind", kind]
        for module in imports:
            argv += ["--import", module]
        if reap_interval:
            argv += ["--reap-interval", str(reap_interval)]
        argv += list(extra_args)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_test_process,
            )
        proc.name, proc.log_path = name, log_path
        started.append(proc)
        key = f"rq:worker:{name}"
        if kind is None:
            key = f"rq:worker:{name}.default"
        # Django's start-up in a fresh process takes seconds on a busy machine.
        deadline = time.monotonic() + 60
        while not redis_conn.exists(key):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Worker {name} did not start:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        return proc

    yield start
    import signal

    for proc in started:
        try:
            # The whole session: a supervisor's children too.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _die_with_test_process():
    """Have Linux kill a worker if the test process dies without teardown."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

"""Queue names per Docker host and kind."""

import pytest
from django.conf import settings

from portal.operations import request_operation
from portal.queues import (
    get_queue,
    host_slug,
    queue_for,
    queue_name_for,
    worker_queue_names,
)
from stacks.models import Environment

pytestmark = pytest.mark.django_db


def env(name, docker_host, **settings_):
    return Environment.objects.create(
        name=name, docker_host=docker_host, settings=settings_
    )


def test_local_engine_uses_configured_queues():
    local = env("dev", "unix:///var/run/docker.sock")
    assert host_slug(local) is None
    assert queue_name_for(local) == "default"
    assert queue_name_for(local, "long") == "long"


def test_other_hosts_get_their_own_queues():
    gpu = env("gpu", "tcp://10.0.4.7:2376")
    remote = env("far", "ssh://deploy@gpu-box.example")
    assert queue_name_for(gpu) == "host-10-0-4-7-2376-default"
    assert queue_name_for(gpu, "long") == "host-10-0-4-7-2376-long"
    assert queue_name_for(remote) == "host-gpu-box-example-default"


def test_environments_on_one_host_share_its_queues():
    a = env("a", "tcp://10.0.4.7:2376")
    b = env("b", "tcp://10.0.4.7:2376")
    named = env("c", "tcp://192.168.1.5:2376", queue_host="Box-1")
    assert queue_name_for(a) == queue_name_for(b)
    assert queue_name_for(named) == "host-box-1-default"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        queue_name_for(env("dev", "unix:///var/run/docker.sock"), "urgent")


def test_host_queue_shares_the_default_connection(redis_conn):
    queue = queue_for(env("gpu", "tcp://10.0.4.7:2376"), "long")
    assert queue.name == "host-10-0-4-7-2376-long"

    def where(q):
        kwargs = q.connection.connection_pool.connection_kwargs
        return kwargs["host"], kwargs["port"], kwargs["db"]

    assert where(queue) == where(get_queue("default"))
    assert queue._default_timeout == settings.RQ_QUEUES["long"]["DEFAULT_TIMEOUT"]


def test_queues_of_a_process_share_one_redis_client(redis_conn):
    """Every enqueue used to open a connection of its own."""
    gpu = queue_for(env("gpu", "tcp://10.0.4.7:2376"), "default")
    assert get_queue("default").connection is get_queue("default").connection
    assert gpu.connection is get_queue("default").connection
    assert get_queue("long").connection is get_queue("long").connection


def test_worker_queue_names():
    gpu = env("gpu", "tcp://10.0.4.7:2376")
    also = env("also", "tcp://10.0.4.7:2376")
    assert worker_queue_names() == ["default", "long"]
    assert worker_queue_names([gpu, also], kinds=["default"]) == [
        "host-10-0-4-7-2376-default"
    ]


@pytest.mark.django_db(transaction=True)
def test_operation_goes_to_its_hosts_queue(redis_conn, make_user):
    gpu = env("gpu", "tcp://10.0.4.7:2376")
    user = make_user("root", is_superuser=True)
    short = request_operation("test.steps", user=user, environment=gpu)
    long = request_operation("test.long-steps", user=user, environment=gpu, stack=None)
    assert short.queue_name == "host-10-0-4-7-2376-default"
    assert long.queue_name == "host-10-0-4-7-2376-long"
    assert get_queue(short.queue_name).job_ids == [str(short.pk)]
    # The long one waits for the short one (same environment, whole env).
    assert get_queue(long.queue_name).job_ids == []

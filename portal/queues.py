"""RQ queues per Docker host, short and long apart.

Every Docker host has two queues: ``default`` for short operations (start,
stop, checks) and ``long`` for backups and restore drills, so a backup never
delays a restart as long as each kind has its own worker (``manage.py
run_worker`` starts one per kind unless told ``--kind``).

Environments on the local engine (a ``unix://`` socket) use the configured
``default`` and ``long`` queues. An environment on another host uses
``host-<slug>-default`` and ``host-<slug>-long``, where the slug comes from
the host part of ``Environment.docker_host`` (or from the environment's
``settings["queue_host"]`` when set), so a worker can run next to its host
and environments on the same host share its queues. Those queues are made at
runtime on the connection of the ``default`` queue.
"""

import re
from urllib.parse import urlsplit

import django_rq
from django.conf import settings
from django_rq.jobs import get_job_class
from django_rq.queues import DjangoRQ, get_result_ttl
from rq.queue import Queue

__all__ = [
    "QUEUE_KINDS",
    "HostQueue",
    "get_connection",
    "get_queue",
    "host_slug",
    "queue_for",
    "queue_name_for",
    "worker_queue_names",
]

QUEUE_KINDS = ("default", "long")

_LOCAL_SCHEMES = ("unix", "npipe", "")


def host_slug(environment):
    """Return the queue slug of ``environment``'s Docker host, None if local."""
    override = (environment.settings or {}).get("queue_host")
    if override:
        return _slugify(str(override))
    url = (environment.docker_host or "").strip()
    parts = urlsplit(url)
    if parts.scheme in _LOCAL_SCHEMES:
        return None
    host = parts.hostname or parts.netloc or url
    if parts.port:
        host = f"{host}-{parts.port}"
    return _slugify(host)


def _slugify(value):
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "host"


def queue_name_for(environment, kind="default"):
    """Return the name of the ``kind`` queue serving ``environment``."""
    if kind not in QUEUE_KINDS:
        raise ValueError(f"Unknown queue kind {kind!r}; use one of {QUEUE_KINDS}.")
    slug = host_slug(environment)
    return kind if slug is None else f"host-{slug}-{kind}"


class HostQueue(DjangoRQ):
    """A queue made at runtime, not listed in ``RQ_QUEUES``.

    django-rq looks up a queue's result TTL by its name in ``RQ_QUEUES``;
    a host queue takes the settings of the configured queue of its kind.
    """

    def original_enqueue_call(self, *args, **kwargs):
        kwargs.setdefault("result_ttl", get_result_ttl(_settings_name(self.name)))
        return Queue.enqueue_call(self, *args, **kwargs)


def _settings_name(name):
    kind = name.rsplit("-", 1)[-1]
    return kind if kind in settings.RQ_QUEUES else "default"


# Redis clients of this process, by queue configuration.
_connections = {}


def get_connection(kind="default"):
    """Return this process's Redis client for the configured queue ``kind``.

    django-rq makes a new client, with a pool of its own, on every call, so
    every request of an operation opened a Redis connection of its own
    (about a millisecond, most of it redis-py reading its package metadata
    to introduce itself). One client per configuration is kept instead;
    redis-py's pool notices a fork and opens the child's own connections.
    """
    config = settings.RQ_QUEUES[kind]
    key = (kind, repr(sorted(config.items())))
    connection = _connections.get(key)
    if connection is None:
        connection = _connections[key] = django_rq.get_connection(kind)
    return connection


def get_queue(name):
    """Return the RQ queue called ``name``, configured or per host.

    Jobs are enqueued immediately (``commit_mode="auto"``): the operations
    engine already defers enqueueing to ``transaction.on_commit``.
    """
    if name in settings.RQ_QUEUES:
        return django_rq.get_queue(
            name, commit_mode="auto", connection=get_connection(name)
        )
    base = _settings_name(name)
    return HostQueue(
        name,
        connection=get_connection(base),
        default_timeout=settings.RQ_QUEUES[base].get("DEFAULT_TIMEOUT"),
        job_class=get_job_class(),
        commit_mode="auto",
    )


def queue_for(environment, kind="default"):
    """Return the ``kind`` queue (``default`` or ``long``) of ``environment``."""
    return get_queue(queue_name_for(environment, kind))


def worker_queue_names(environments=None, kinds=QUEUE_KINDS):
    """Return the queue names a worker for ``environments`` listens on.

    Without environments: the local engine's queues. Order follows
    ``kinds``, so a worker given both prefers short jobs.
    """
    names = []
    for kind in kinds:
        if not environments:
            candidates = [kind]
        else:
            candidates = [queue_name_for(env, kind) for env in environments]
        for name in candidates:
            if name not in names:
                names.append(name)
    return names

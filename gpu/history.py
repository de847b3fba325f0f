"""The short history of GPU samples, kept in Redis, and their broadcast.

Per environment: ``portal:gpu:<env>:seq`` (a counter numbering the
samples), ``portal:gpu:<env>:history`` (the newest ``HISTORY`` samples as
JSON, newest first). A sample is saved, then published to ``gpu.<env>``
(:func:`portal.publish.publish`), so a consumer that joins the group and
then reads the history misses nothing; it drops a sample it already sent by
its ``seq``.
"""

import json
import threading

import redis
from django.conf import settings

from portal.publish import publish

from .config import get_config
from .groups import gpu_group
from .readings import Sample
from .summary import sample_payload

__all__ = ["EVENT_TYPE", "history", "latest", "latest_samples", "save_and_publish"]

EVENT_TYPE = "gpu.sample"

_connections = {}
_lock = threading.Lock()


def _redis():
    url = settings.REDIS_URL
    with _lock:
        conn = _connections.get(url)
        if conn is None:
            conn = _connections[url] = redis.Redis.from_url(url)
        return conn


def _key(environment, what):
    return f"portal:gpu:{environment}:{what}"


def save_and_publish(sample):
    """Number ``sample``, add it to its environment's history, publish it.

    Returns the sample (with ``seq`` set).
    """
    conn = _redis()
    env = sample.environment
    sample.seq = conn.incr(_key(env, "seq"))
    data = sample_payload(sample)
    pipe = conn.pipeline()
    pipe.lpush(_key(env, "history"), json.dumps(data))
    pipe.ltrim(_key(env, "history"), 0, max(1, int(get_config()["HISTORY"])) - 1)
    pipe.execute()
    publish(gpu_group(env), {"type": EVENT_TYPE, "sample": data})
    return sample


def history(environment, limit=None):
    """Return the stored samples of ``environment`` as dicts, oldest first."""
    stop = -1 if limit is None else max(0, limit - 1)
    raw = _redis().lrange(_key(environment, "history"), 0, stop)
    return [json.loads(item) for item in reversed(raw)]


def latest(environment):
    """Return the newest stored :class:`Sample` of ``environment``, or None."""
    raw = _redis().lindex(_key(environment, "history"), 0)
    return None if raw is None else Sample.from_dict(json.loads(raw))


def latest_samples(environments):
    """Return ``{name: newest Sample or None}`` for several environments."""
    names = [getattr(e, "name", e) for e in environments]
    pipe = _redis().pipeline()
    for name in names:
        pipe.lindex(_key(name, "history"), 0)
    return {
        name: None if raw is None else Sample.from_dict(json.loads(raw))
        for name, raw in zip(names, pipe.execute(), strict=True)
    }

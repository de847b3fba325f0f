"""The GPU memory a stop or restart frees, for the blast radius preview.

Registered with :func:`stacks.operations.register_radius_extra`, so every
blast radius (the environment page's confirm dialog, the plan of a stop or
restart, ``manage.py stack``'s plan line) says how much GPU memory the
stopping services hold in the newest sample, when they hold any.
"""

import time

import redis

from .config import get_config
from .history import latest
from .units import format_bytes

__all__ = ["gpu_memory_freed"]

# A sample older than this says nothing about now.
MAX_AGE = 300


def gpu_memory_freed(environment, stack, stopping):
    """Return ``{"bytes", "services", "taken", "text"}``, or None.

    None when no recent sample attributes GPU memory to a stopping service
    of ``stack`` in ``environment``.
    """
    try:
        sample = latest(environment.name)
    except redis.RedisError:
        return None
    max_age = max(MAX_AGE, 3 * float(get_config()["INTERVAL"]))
    if sample is None or time.time() - sample.taken > max_age:
        return None
    held = {}
    for process in sample.processes:
        if (
            process.environment == environment.name
            and process.stack == stack.name
            and process.service in stopping
            and process.used_memory_bytes
        ):
            held[process.service] = (
                held.get(process.service, 0) + process.used_memory_bytes
            )
    if not held:
        return None
    total = sum(held.values())
    services = [{"service": s, "bytes": held[s]} for s in sorted(held)]
    detail = ", ".join(f"{s['service']} {format_bytes(s['bytes'])}" for s in services)
    return {
        "bytes": total,
        "services": services,
        "taken": sample.taken,
        "text": f"frees {format_bytes(total)} of GPU memory ({detail})",
    }

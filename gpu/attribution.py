"""Which container, compose service and environment a GPU process belongs to.

pid -> ``/proc/<pid>/cgroup`` -> container id -> the container's labels.
The cgroup file names the container whatever the cgroup version and driver:

==========================  ================================================
cgroup v2, systemd driver   ``0::/system.slice/docker-<id>.scope``
cgroup v2, cgroupfs         ``0::/docker/<id>``
cgroup v1                   ``4:memory:/docker/<id>`` (one line per controller)
rootless Docker             ``0::/user.slice/.../docker-<id>.scope``
containerd, CRI-O, Podman   ``cri-containerd-<id>``, ``crio-<id>``,
                            ``libpod-<id>`` (found, but not Docker's)
==========================  ================================================

The cgroup must be read in the host's cgroup namespace (the local sampler
runs on the host; the GPU helper shares the host's), else it is ``/``.
The container's labels are read from the Docker engine's listing
(:func:`stacks.engine.running_containers`) and interpreted through
:mod:`stacks.engine.labels`, so a process of a portal service says its
environment, stack and service, and any other container at least its name.
"""

import re
from pathlib import Path

from stacks.engine import labels

__all__ = ["attribute", "container_id_from_cgroup", "read_cgroups"]

# A 64-hex container id as a cgroup path component or its systemd scope:
# "/docker/<id>", "docker-<id>.scope", "cri-containerd-<id>.scope".
_ID_RE = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")


def container_id_from_cgroup(text):
    """Return the container id named by a ``/proc/<pid>/cgroup`` text, or None.

    The unified hierarchy's line (``0::``) is preferred; otherwise the first
    controller line naming an id. Of several ids on a line (Docker in
    Docker) the innermost, last, is taken.
    """
    found = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        _controllers, _, path = rest.partition(":")
        ids = _ID_RE.findall(path)
        if not ids:
            continue
        if hierarchy == "0":
            return ids[-1]
        found = found or ids[-1]
    return found


def read_cgroups(pids, proc=Path("/proc")):
    """Return ``{pid: cgroup text}`` of the pids that still exist here."""
    found = {}
    for pid in pids:
        if pid is None:
            continue
        try:
            found[pid] = (Path(proc) / str(int(pid)) / "cgroup").read_text()
        except (OSError, ValueError):
            continue
    return found


def attribute(processes, cgroups, containers):
    """Fill in the container, environment, stack and service of each process.

    Args:
        processes: :class:`~gpu.readings.ProcessReading` objects (changed in
            place and returned).
        cgroups: ``{pid: /proc/<pid>/cgroup text}`` read on the GPU's host.
        containers: ``{container id: list summary}`` of that host's engine.
    """
    for process in processes:
        container_id = container_id_from_cgroup(cgroups.get(process.pid) or "")
        if container_id is None:
            continue
        process.container_id = container_id
        summary = containers.get(container_id)
        if summary is None:
            continue
        found = summary.get("Labels") or {}
        names = summary.get("Names") or []
        process.container_name = names[0].lstrip("/") if names else None
        process.environment = found.get(labels.ENVIRONMENT)
        process.stack = found.get(labels.STACK)
        process.service = labels.service_of(found) or None
    return processes

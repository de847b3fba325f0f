"""Checks before a start: GPUs and host ports."""

import errno
import os
import socket
from pathlib import Path

from ..addresses import ips_overlap
from . import labels
from .client import is_local_host
from .errors import EngineError
from .specs import GPU_DRIVER

__all__ = ["check_gpu", "check_ports", "ips_overlap"]


def check_gpu(client, environment, services):
    """Fail when a GPU service is planned on a host without the NVIDIA runtime."""
    wanting = [s.name for s in services if s.gpu]
    if not wanting:
        return
    runtimes = client.info().get("Runtimes") or {}
    if GPU_DRIVER not in runtimes:
        raise EngineError(
            f"Service {', '.join(wanting)} needs a GPU, but the Docker host of "
            f"environment {environment.name} ({environment.docker_host}) has no "
            f"NVIDIA runtime (runtimes: {', '.join(sorted(runtimes)) or 'none'}). "
            "Turn GPUs off for this environment (gpu_enabled) or for the service "
            "(override gpu: false)."
        )


def _describe_holder(name, found):
    env, stack, svc = (
        found.get(labels.ENVIRONMENT),
        found.get(labels.STACK),
        labels.service_of(found),
    )
    if env:
        return f"container {name} (environment {env}, stack {stack}, service {svc})"
    return f"container {name}"


def _process_holding(port, protocol):
    """Return "process NAME (pid N)" listening on ``port``, best effort."""
    inodes = set()
    tables = ["tcp", "tcp6"] if protocol == "tcp" else ["udp", "udp6"]
    for table in tables:
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and (
                protocol == "udp" or st == "0A"
            ):
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    comm = (pid_dir / "comm").read_text().strip()
                    return f"process {comm} (pid {pid_dir.name})"
        except OSError:
            continue
    return None


def _bind_free(host_ip, port, protocol):
    """Return None when ``host_ip:port`` can be bound, else the errno text."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        # Sockets in TIME_WAIT are no obstacle for Docker either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return os.strerror(exc.errno)
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host_ip} is not an address of this host"
            raise
    return None


def check_ports(client, environment, plan):
    """Fail when a port ``plan`` publishes is taken on the Docker host.

    Checked against every running container's published ports (naming the
    holder; containers of this same project are being reconciled and do not
    count) and, for a local engine, by binding the address.
    """
    wanted = [
        (svc, p) for svc in plan.services for p in svc.ports if p.published is not None
    ]
    problems = []
    seen = {}
    for svc, p in wanted:
        key = (p.published, p.protocol)
        for other_svc, other in seen.get(key, []):
            if ips_overlap(other.host_ip, p.host_ip):
                problems.append(
                    f"port {p.published}/{p.protocol} is published by both "
                    f"{other_svc.name} and {svc.name}"
                )
        seen.setdefault(key, []).append((svc, p))
    held, ours = {}, set()
    # Every running container, the portal's or not: any of them can hold a port.
    for summary in client.api.containers():
        found = summary.get("Labels") or {}
        name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        for port in summary.get("Ports") or []:
            if not port.get("PublicPort"):
                continue
            key = (port["PublicPort"], port.get("Type", "tcp"))
            if found.get(labels.COMPOSE_PROJECT) == plan.project:
                ours.add(key)
                continue
            held.setdefault(key, []).append((port.get("IP", ""), name, found))
    local = is_local_host(environment)
    for svc, p in wanted:
        key = (p.published, p.protocol)
        holders = [
            _describe_holder(name, found)
            for ip, name, found in held.get(key, [])
            if ips_overlap(ip, p.host_ip)
        ]
        if holders:
            problems.append(
                f"service {svc.name}: port {p.published}/{p.protocol} on "
                f"{p.host_ip} is already published by {holders[0]}"
            )
            continue
        if local and key not in ours:
            reason = _bind_free(p.host_ip, p.published, p.protocol)
            if reason:
                holder = _process_holding(p.published, p.protocol)
                problems.append(
                    f"service {svc.name}: port {p.published}/{p.protocol} on "
                    f"{p.host_ip} is in use on the host"
                    + (f" by {holder}" if holder else f" ({reason})")
                )
    if problems:
        raise EngineError(
            f"Cannot start stack {plan.stack.name} in {environment.name}: "
            + "; ".join(problems)
            + "."
        )

"""Resource usage of containers: one ``stats`` sample each.

``GET /containers/{id}/stats?stream=false`` answers with the current
counters and those of about a second before (``precpu_stats``), so one call
gives a CPU percentage; the engine takes that second, so the containers of
a page are sampled in parallel. The figures are computed as ``docker
stats`` computes them (docker/cli ``cli/command/container/stats_helpers.go``):
CPU against the host's CPU time over the same interval, times the number of
CPUs; memory without the reclaimable page cache (``inactive_file``).
"""

from concurrent.futures import ThreadPoolExecutor

from docker.errors import APIError, NotFound

from .errors import EngineError, api_error_text

__all__ = ["ContainerStats", "container_stats", "sample_stats", "summarize"]

# Containers sampled at the same time at most.
WORKERS = 8


class ContainerStats(dict):
    """One container's sample as a JSON-able dict.

    Keys: ``cpu_percent`` (100 is one CPU), ``cpus`` (online CPUs),
    ``memory_bytes``, ``memory_limit_bytes``, ``memory_percent``,
    ``net_rx_bytes``, ``net_tx_bytes``, ``block_read_bytes``,
    ``block_write_bytes``, ``pids``, ``read`` (the engine's timestamp).
    """


def _cpu_percent(stats):
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage") or 0
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage") or 0
    system = cpu.get("system_cpu_usage") or 0
    pre_system = pre.get("system_cpu_usage") or 0
    cpus = cpu.get("online_cpus") or len(
        (cpu.get("cpu_usage") or {}).get("percpu_usage") or []
    )
    cpu_delta, system_delta = total - pre_total, system - pre_system
    if cpu_delta <= 0 or system_delta <= 0 or not pre_system:
        return 0.0, cpus
    return cpu_delta / system_delta * (cpus or 1) * 100.0, cpus


def _memory(stats):
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage") or 0
    detail = memory.get("stats") or {}
    # cgroup v1 reports total_inactive_file, v2 inactive_file; both are page
    # cache the kernel can drop, which `docker stats` leaves out.
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0)) or 0
    if cache < usage:
        usage -= cache
    limit = memory.get("limit") or 0
    return usage, limit, (usage / limit * 100.0 if limit else 0.0)


def _network(stats):
    rx = tx = 0
    for counters in (stats.get("networks") or {}).values():
        rx += counters.get("rx_bytes") or 0
        tx += counters.get("tx_bytes") or 0
    return rx, tx


def _block_io(stats):
    read = write = 0
    entries = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    for entry in entries or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += entry.get("value") or 0
        elif op == "write":
            write += entry.get("value") or 0
    return read, write


def summarize(stats):
    """Return the :class:`ContainerStats` of one raw stats answer."""
    cpu, cpus = _cpu_percent(stats)
    memory, limit, memory_percent = _memory(stats)
    rx, tx = _network(stats)
    read, write = _block_io(stats)
    return ContainerStats(
        cpu_percent=round(cpu, 2),
        cpus=cpus,
        memory_bytes=memory,
        memory_limit_bytes=limit,
        memory_percent=round(memory_percent, 2),
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        block_read_bytes=read,
        block_write_bytes=write,
        pids=(stats.get("pids_stats") or {}).get("current") or 0,
        read=stats.get("read") or "",
    )


def container_stats(client, container_id):
    """Return one :class:`ContainerStats` sample of a running container.

    Raises EngineError when the container is gone or the engine refuses.
    """
    try:
        raw = client.api.stats(container_id, stream=False)
    except NotFound as exc:
        raise EngineError(f"Container {container_id[:12]} not found") from exc
    except APIError as exc:
        raise EngineError(
            f"Cannot read the stats of container {container_id[:12]}: "
            f"{api_error_text(exc)}"
        ) from exc
    return summarize(raw)


def sample_stats(client, container_ids, *, workers=WORKERS):
    """Return ``{container id: ContainerStats or {"error": text}}``.

    One sample per container, taken in parallel (each takes the engine about
    a second). A container that fails has an ``error`` instead of figures;
    the others are still returned.
    """
    ids = list(dict.fromkeys(container_ids))
    if not ids:
        return {}

    def one(container_id):
        try:
            return container_id, container_stats(client, container_id)
        except EngineError as exc:
            return container_id, {"error": str(exc)}
        except OSError as exc:
            return container_id, {"error": f"{container_id[:12]}: {exc}"}

    with ThreadPoolExecutor(max_workers=min(workers, len(ids))) as pool:
        return dict(pool.map(one, ids))

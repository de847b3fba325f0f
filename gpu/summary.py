"""What a sample says at a glance: who holds the memory, one line per host.

Computed here once and sent with every sample (``holders``, ``summary``),
so the GPU page, the environment page and their scripts show the same
figures without doing the sums again.
"""

from .units import format_bytes

__all__ = ["holders", "sample_payload", "service_figures", "summary_line"]


def _holder_key(process, environment):
    """Return ``(key, label, kind)`` of whoever holds a process's memory."""
    if process.environment == environment and process.service:
        label = (
            f"{process.stack}/{process.service}" if process.stack else process.service
        )
        return (
            ("service", process.stack or "", process.service),
            label,
            "service",
        )
    if process.environment and process.environment != environment:
        return (
            ("environment", process.environment),
            f"environment {process.environment}",
            "environment",
        )
    if process.container_name or process.container_id:
        name = process.container_name or (process.container_id or "")[:12]
        return (("container", name), f"container {name}", "container")
    return (
        ("process", process.pid),
        f"pid {process.pid} ({process.name or '?'}), not in a container",
        "process",
    )


def holders(sample):
    """Return who holds GPU memory in ``sample``, most first.

    Each row: ``label``, ``kind`` (service, environment, container or
    process), ``stack``, ``service``, ``bytes`` (None when no process of it
    reported its memory), ``processes``, ``gpus`` (indexes).
    """
    index_of = {gpu.uuid: gpu.index for gpu in sample.gpus}
    rows = {}
    for process in sample.processes:
        key, label, kind = _holder_key(process, sample.environment)
        row = rows.setdefault(
            key,
            {
                "label": label,
                "kind": kind,
                "stack": process.stack if kind == "service" else None,
                "service": process.service if kind == "service" else None,
                "bytes": None,
                "processes": 0,
                "gpus": [],
            },
        )
        row["processes"] += 1
        if process.used_memory_bytes is not None:
            row["bytes"] = (row["bytes"] or 0) + process.used_memory_bytes
        index = index_of.get(process.gpu_uuid)
        if index is not None and index not in row["gpus"]:
            row["gpus"].append(index)
    for row in rows.values():
        row["gpus"].sort()
        row["text"] = format_bytes(row["bytes"])
    return sorted(rows.values(), key=lambda r: (-(r["bytes"] or 0), r["label"]))


def summary_line(sample):
    """Return one line about the host's GPUs, or why there are none."""
    if sample is None:
        return "GPUs: no sample yet (is manage.py sample_gpus running?)"
    if sample.error:
        return f"GPUs: none. {sample.error}"
    used = sum(g.memory_used_bytes or 0 for g in sample.gpus)
    total = sum(g.memory_total_bytes or 0 for g in sample.gpus)
    names = sorted({g.name or "GPU" for g in sample.gpus})
    return (
        f"GPUs: {len(sample.gpus)} × {', '.join(names)}, "
        f"{format_bytes(used)} of {format_bytes(total)} in use"
    )


def service_figures(sample):
    """Return ``{"<stack>/<service>": text}`` for the services holding GPUs."""
    if sample is None:
        return {}
    util = {g.index: g.utilization_gpu for g in sample.gpus}
    figures = {}
    for row in holders(sample):
        if row["kind"] != "service":
            continue
        gpus = ", ".join(
            f"GPU {i}" + (f" {util[i]} %" if util.get(i) is not None else "")
            for i in row["gpus"]
        )
        figures[f"{row['stack']}/{row['service']}"] = f"{row['text']}" + (
            f" · {gpus}" if gpus else ""
        )
    return figures


def sample_payload(sample):
    """Return the sample as sent and stored: its dict plus the figures above."""
    data = sample.to_dict()
    data["holders"] = holders(sample)
    data["summary"] = summary_line(sample)
    data["services"] = service_figures(sample)
    return data

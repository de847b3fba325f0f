"""GPU metrics for Prometheus (served at ``/metrics`` by the portal).

From the newest sample of each environment the caller may see (what the
GPU page shows). Per GPU, labelled ``environment``, ``gpu`` (the index),
``uuid`` and ``name``:

=======================================  =====================================
``portal_gpu_utilization_percent``       GPU utilisation
``portal_gpu_memory_utilization_percent``memory controller utilisation
``portal_gpu_memory_used_bytes``         memory in use
``portal_gpu_memory_total_bytes``        memory installed
``portal_gpu_temperature_celsius``       GPU temperature
``portal_gpu_power_draw_watts``          power draw
``portal_gpu_power_limit_watts``         enforced power limit
``portal_gpu_sm_clock_mhz``              SM clock
``portal_gpu_memory_clock_mhz``          memory clock
``portal_gpu_ecc_uncorrected_errors``    volatile uncorrected ECC errors
``portal_gpu_xid_errors``                XID errors seen by the sampler (NVML)
=======================================  =====================================

Per service, labelled ``environment``, ``stack``, ``service``:
``portal_gpu_service_memory_bytes`` (GPU memory its processes hold) and
``portal_gpu_service_processes``. Per environment: ``portal_gpu_available``
(1 when the newest sample found GPUs, 0 when it found none) and
``portal_gpu_sample_age_seconds``. A figure the GPU did not report has no
sample (never a zero). Registered in :class:`gpu.apps.GpuConfig`.
"""

import time

import redis
from prometheus_client.core import GaugeMetricFamily

from .history import latest_samples

__all__ = ["GPU_FIGURES", "GpuCollector"]

GPU_LABELS = ["environment", "gpu", "uuid", "name"]
SERVICE_LABELS = ["environment", "stack", "service"]

#: (metric name, reading attribute, help text).
GPU_FIGURES = (
    ("portal_gpu_utilization_percent", "utilization_gpu", "GPU utilisation, percent."),
    (
        "portal_gpu_memory_utilization_percent",
        "utilization_memory",
        "Memory controller utilisation, percent.",
    ),
    ("portal_gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use."),
    ("portal_gpu_memory_total_bytes", "memory_total_bytes", "GPU memory installed."),
    ("portal_gpu_temperature_celsius", "temperature_c", "GPU temperature."),
    ("portal_gpu_power_draw_watts", "power_draw_w", "Power draw."),
    ("portal_gpu_power_limit_watts", "power_limit_w", "Enforced power limit."),
    ("portal_gpu_sm_clock_mhz", "clock_sm_mhz", "SM clock."),
    ("portal_gpu_memory_clock_mhz", "clock_mem_mhz", "Memory clock."),
    (
        "portal_gpu_ecc_uncorrected_errors",
        "ecc_uncorrected",
        "Volatile uncorrected ECC errors since the driver loaded.",
    ),
    (
        "portal_gpu_xid_errors",
        "xid_errors",
        "XID errors seen by the sampler since it started (NVML only).",
    ),
)


class GpuCollector:
    """Collect the GPU metrics of some environments."""

    def __init__(self, environments):
        self.environments = list(environments)

    def collect(self):
        """Yield the metric families (prometheus-client's collector protocol)."""
        try:
            samples = latest_samples(self.environments)
        except redis.RedisError:
            samples = {}
        gpu_families = [
            (GaugeMetricFamily(name, text, labels=GPU_LABELS), attribute)
            for name, attribute, text in GPU_FIGURES
        ]
        service_memory = GaugeMetricFamily(
            "portal_gpu_service_memory_bytes",
            "GPU memory held by the processes of a service.",
            labels=SERVICE_LABELS,
        )
        service_processes = GaugeMetricFamily(
            "portal_gpu_service_processes",
            "GPU processes of a service.",
            labels=SERVICE_LABELS,
        )
        available = GaugeMetricFamily(
            "portal_gpu_available",
            "1 when the newest sample found GPUs on the environment's host.",
            labels=["environment"],
        )
        age = GaugeMetricFamily(
            "portal_gpu_sample_age_seconds",
            "Age of the newest GPU sample.",
            labels=["environment"],
        )
        now = time.time()
        for name in sorted(samples):
            sample = samples[name]
            if sample is None:
                continue
            available.add_metric([name], 1 if sample.gpus else 0)
            age.add_metric([name], max(0.0, now - sample.taken))
            for gpu in sample.gpus:
                labels = [name, str(gpu.index), gpu.uuid or "", gpu.name or ""]
                for family, attribute in gpu_families:
                    value = getattr(gpu, attribute)
                    if value is not None:
                        family.add_metric(labels, value)
            held = {}
            for process in sample.processes:
                if process.environment != name or not process.service:
                    continue
                key = (process.stack or "", process.service)
                memory, count = held.get(key, (0, 0))
                held[key] = (memory + (process.used_memory_bytes or 0), count + 1)
            for (stack, service), (memory, count) in sorted(held.items()):
                service_memory.add_metric([name, stack, service], memory)
                service_processes.add_metric([name, stack, service], count)
        for family, _ in gpu_families:
            yield family
        yield service_memory
        yield service_processes
        yield available
        yield age

"""What a GPU sample holds: GPUs, the processes on them, and who they are.

Every source (NVML, ``nvidia-smi`` run here, ``nvidia-smi`` in a helper
container on an environment's Docker host) produces these same classes, and
everything downstream (history, WebSocket, page, metrics, blast radius)
reads only them, as the plain dicts of :meth:`Sample.to_dict`.

Units are fixed whatever the source says: memory in bytes, power in watts,
clocks in MHz, temperature in degrees Celsius, utilisation and fan speed in
percent. A figure the source did not report, or reported as ``[N/A]``, is
None, never zero.
"""

from dataclasses import asdict, dataclass, field, fields

__all__ = ["MIB", "GpuReading", "ProcessReading", "Sample"]

MIB = 1 << 20


@dataclass
class GpuReading:
    """One GPU at one moment."""

    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    driver_version: str | None = None
    pci_bus_id: str | None = None
    temperature_c: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    fan_percent: int | None = None
    pstate: str | None = None
    clock_sm_mhz: int | None = None
    clock_mem_mhz: int | None = None
    clock_sm_max_mhz: int | None = None
    # Uncorrected ECC errors since the driver loaded (volatile).
    ecc_uncorrected: int | None = None
    # XID errors seen by the sampler (NVML events); nvidia-smi reports none.
    xid_errors: int | None = None

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ProcessReading:
    """A compute process holding memory on a GPU, and where it runs."""

    pid: int | None = None
    name: str | None = None
    gpu_uuid: str | None = None
    used_memory_bytes: int | None = None
    # Filled in by gpu.attribution from the process's cgroup and the
    # container's labels; None when the process is not in a container (or
    # one of another Docker engine).
    container_id: str | None = None
    container_name: str | None = None
    environment: str | None = None
    stack: str | None = None
    service: str | None = None

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Sample:
    """The GPUs of one environment's Docker host, read once.

    ``error`` says in plain words why there are no GPUs (no driver, no
    NVIDIA runtime, the source failed); ``gpus`` is then empty.
    """

    environment: str
    host: str
    source: str
    taken: float
    gpus: list = field(default_factory=list)
    processes: list = field(default_factory=list)
    error: str | None = None
    seq: int | None = None

    def to_dict(self):
        """Return the sample as JSON-able dicts (what is stored and sent)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(
            environment=data["environment"],
            host=data["host"],
            source=data["source"],
            taken=data["taken"],
            gpus=[GpuReading.from_dict(g) for g in data.get("gpus") or []],
            processes=[
                ProcessReading.from_dict(p) for p in data.get("processes") or []
            ],
            error=data.get("error"),
            seq=data.get("seq"),
        )

"""Where GPU figures come from: NVML, nvidia-smi here, nvidia-smi on the host.

Every source has one method, :meth:`read`, returning a :class:`HostReading`
(GPUs, processes and the cgroup text of each process, read on the GPUs'
host) or raising :class:`GpuUnavailable` with the plain reason. Raw output
goes through :mod:`gpu.parsing`, the code the tests feed the captures to.

=================  ==========================================================
``nvml``           the NVIDIA driver's library through nvidia-ml-py, on the
                   machine the sampler runs on; also counts XID errors
``nvidia-smi``     ``nvidia-smi --query-gpu`` and ``--query-compute-apps``
                   run here (argument lists, no shell)
``docker``         the same two queries in a short-lived GPU helper
                   container on the environment's Docker host
                   (:func:`stacks.engine.run_gpu_helper`), so a remote GPU
                   host needs no agent
=================  ==========================================================

``settings.gpu_source`` of an environment picks one; ``auto`` (the default)
tries NVML, then nvidia-smi, then the helper for a local Docker host, and
only the helper for a remote one. ``off`` samples nothing.
``settings.gpu_query: xml`` has both nvidia-smi sources run ``nvidia-smi -q
-x`` instead of the two CSV queries: one run for GPUs and processes (one
consistent moment), at the price of a larger, slower answer.
"""

import subprocess

import pynvml

from stacks import engine

from .attribution import read_cgroups
from .parsing import (
    QUERY_APPS_FIELDS,
    QUERY_GPU_FIELDS,
    CaptureError,
    parse_compute_apps,
    parse_nvml,
    parse_query_gpu,
    parse_smi_xml,
)

__all__ = [
    "HELPER_SCRIPT",
    "QUERY_CHOICES",
    "SOURCE_CHOICES",
    "DockerSmiSource",
    "GpuUnavailable",
    "HostReading",
    "LocalSmiSource",
    "NvmlSource",
    "parse_helper_output",
    "read_nvml",
    "source_setting",
    "sources_for",
]

SOURCE_CHOICES = ("auto", "nvml", "nvidia-smi", "docker", "off")
QUERY_CHOICES = ("csv", "xml")
# Seconds nvidia-smi may take; it answers in well under one on a healthy GPU.
SMI_TIMEOUT = 20


class GpuUnavailable(Exception):
    """No GPU figures from this source; the message says why, plainly."""


class HostReading:
    """What one source read on one host at one moment."""

    def __init__(self, source, gpus, processes, cgroups):
        self.source = source
        self.gpus = gpus
        self.processes = processes
        self.cgroups = cgroups


def source_setting(environment):
    """Return the environment's ``settings.gpu_source`` (default ``auto``).

    Raises ValueError naming the environment and the allowed values.
    """
    value = (environment.settings or {}).get("gpu_source", "auto")
    if value not in SOURCE_CHOICES:
        raise ValueError(
            f"environment {environment.name}: settings.gpu_source is {value!r}; "
            f"expected one of {', '.join(SOURCE_CHOICES)}"
        )
    return value


def query_setting(environment):
    """Return the environment's ``settings.gpu_query`` (default ``csv``)."""
    value = (environment.settings or {}).get("gpu_query", "csv")
    if value not in QUERY_CHOICES:
        raise ValueError(
            f"environment {environment.name}: settings.gpu_query is {value!r}; "
            f"expected one of {', '.join(QUERY_CHOICES)}"
        )
    return value


def sources_for(environment, *, nvidia_smi="nvidia-smi"):
    """Return the sources to try for ``environment``, in order (none: off)."""
    setting = source_setting(environment)
    xml = query_setting(environment) == "xml"
    local = engine.is_local_host(environment)
    if setting == "off":
        return []
    if setting == "nvml":
        return [NvmlSource()]
    if setting == "nvidia-smi":
        return [LocalSmiSource(nvidia_smi, xml=xml)]
    if setting == "docker" or not local:
        return [DockerSmiSource(environment, xml=xml)]
    return [
        NvmlSource(),
        LocalSmiSource(nvidia_smi, xml=xml),
        DockerSmiSource(environment, xml=xml),
    ]


# -- NVML -------------------------------------------------------------------


def _nvml(call, *args):
    """Return ``call(*args)``, or None when NVML cannot say (not supported)."""
    try:
        value = call(*args)
    except pynvml.NVMLError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def read_nvml(nvml, xids=None):
    """Return the raw reading :func:`gpu.parsing.parse_nvml` takes.

    ``nvml`` is the initialized binding module; ``xids`` maps a GPU's uuid
    to the XID errors counted so far (None: not counted).
    """
    raw = {"driver": _nvml(nvml.nvmlSystemGetDriverVersion), "gpus": []}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _nvml(nvml.nvmlDeviceGetUUID, handle)
        memory = _nvml(nvml.nvmlDeviceGetMemoryInfo, handle)
        rates = _nvml(nvml.nvmlDeviceGetUtilizationRates, handle)
        pci = _nvml(nvml.nvmlDeviceGetPciInfo, handle)
        ecc = _nvml(
            nvml.nvmlDeviceGetTotalEccErrors,
            handle,
            nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            nvml.NVML_VOLATILE_ECC,
        )
        procs = []
        for proc in _nvml(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []:
            used = getattr(proc, "usedGpuMemory", None)
            procs.append(
                {
                    "pid": proc.pid,
                    "used": used if isinstance(used, int) else None,
                    "name": _nvml(nvml.nvmlSystemGetProcessName, proc.pid),
                }
            )
        bus_id = getattr(pci, "busId", None) if pci is not None else None
        raw["gpus"].append(
            {
                "index": index,
                "name": _nvml(nvml.nvmlDeviceGetName, handle),
                "uuid": uuid,
                "pci_bus_id": bus_id.decode() if isinstance(bus_id, bytes) else bus_id,
                "memory_total": getattr(memory, "total", None),
                "memory_used": getattr(memory, "used", None),
                "memory_free": getattr(memory, "free", None),
                "util_gpu": getattr(rates, "gpu", None),
                "util_mem": getattr(rates, "memory", None),
                "temperature": _nvml(
                    nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
                ),
                "power_mw": _nvml(nvml.nvmlDeviceGetPowerUsage, handle),
                "power_limit_mw": _nvml(nvml.nvmlDeviceGetEnforcedPowerLimit, handle),
                "fan": _nvml(nvml.nvmlDeviceGetFanSpeed, handle),
                "pstate": _nvml(nvml.nvmlDeviceGetPerformanceState, handle),
                "clock_sm": _nvml(
                    nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM
                ),
                "clock_mem": _nvml(
                    nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM
                ),
                "clock_sm_max": _nvml(
                    nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM
                ),
                "ecc_uncorrected": ecc,
                "xid_errors": None if xids is None else xids.get(uuid, 0),
                "procs": procs,
            }
        )
    return raw


class NvmlSource:
    """The GPUs of this machine through NVML; XID errors through its events."""

    name = "nvml"

    def __init__(self):
        self.ready = False
        self.events = None
        self.xids = None

    def _start(self):
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"NVML: {exc}") from exc
        self.ready = True
        self._watch_xids()

    def _watch_xids(self):
        """Register for XID events on every GPU; count them from now on."""
        try:
            events = pynvml.nvmlEventSetCreate()
            for index in range(pynvml.nvmlDeviceGetCount()):
                pynvml.nvmlDeviceRegisterEvents(
                    pynvml.nvmlDeviceGetHandleByIndex(index),
                    pynvml.nvmlEventTypeXidCriticalError,
                    events,
                )
        except pynvml.NVMLError:
            return  # not supported here: XID errors stay unknown (None)
        self.events, self.xids = events, {}

    def _drain_xids(self):
        while self.events is not None:
            try:
                event = pynvml.nvmlEventSetWait_v2(self.events, 0)
            except pynvml.NVMLError:
                return  # timeout: no more events waiting
            uuid = _nvml(pynvml.nvmlDeviceGetUUID, event.device)
            self.xids[uuid] = self.xids.get(uuid, 0) + 1

    def read(self):
        if not self.ready:
            self._start()
        self._drain_xids()
        try:
            raw = read_nvml(pynvml, self.xids)
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(f"NVML: {exc}") from exc
        gpus, processes = parse_nvml(raw)
        if not gpus:
            raise GpuUnavailable("NVML: no GPU found")
        cgroups = read_cgroups([p.pid for p in processes])
        return HostReading(self.name, gpus, processes, cgroups)

    def close(self):
        if self.ready:
            if self.events is not None:
                _nvml(pynvml.nvmlEventSetFree, self.events)
            _nvml(pynvml.nvmlShutdown)
            self.ready = False


# -- nvidia-smi -------------------------------------------------------------


def _query_args(fields_option, fields):
    return [f"--query-{fields_option}={','.join(fields)}", "--format=csv"]


class LocalSmiSource:
    """``nvidia-smi`` run on this machine; cgroups read from this /proc."""

    name = "nvidia-smi"

    def __init__(self, nvidia_smi="nvidia-smi", *, xml=False):
        self.nvidia_smi = nvidia_smi
        self.xml = xml

    def _run(self, args):
        try:
            done = subprocess.run(
                [self.nvidia_smi, *args],
                capture_output=True,
                text=True,
                timeout=SMI_TIMEOUT,
            )
        except FileNotFoundError:
            raise GpuUnavailable(f"nvidia-smi: {self.nvidia_smi} not found") from None
        except subprocess.TimeoutExpired:
            raise GpuUnavailable(
                f"nvidia-smi: no answer within {SMI_TIMEOUT} s"
            ) from None
        if done.returncode != 0:
            raise GpuUnavailable(
                f"nvidia-smi: exit {done.returncode}: "
                f"{_first_line(done.stdout + done.stderr)}"
            )
        return done.stdout

    def list_gpus(self):
        """Return the output of ``nvidia-smi -L`` (one line per GPU)."""
        return self._run(["-L"])

    def read(self):
        if self.xml:
            gpus, processes = parse_smi_xml(self._run(["-q", "-x"]))
        else:
            gpus = parse_query_gpu(self._run(_query_args("gpu", QUERY_GPU_FIELDS)))
            processes = None
        if not gpus:
            raise GpuUnavailable("nvidia-smi: no GPU found")
        if processes is None:
            processes = parse_compute_apps(
                self._run(_query_args("compute-apps", QUERY_APPS_FIELDS))
            )
        cgroups = read_cgroups([p.pid for p in processes])
        return HostReading(self.name, gpus, processes, cgroups)

    def close(self):
        pass


#: Run in the GPU helper (host PID and cgroup namespaces) with the two field
#: lists as $1 and $2. Sections start with "@@<name>"; each query's exit
#: code follows it; then the cgroup file of every pid the second one lists.
HELPER_SCRIPT = """\
echo '@@gpus'
nvidia-smi --query-gpu="$1" --format=csv 2>&1
echo "@@exit $?"
echo '@@apps'
apps=$(nvidia-smi --query-compute-apps="$2" --format=csv 2>&1)
rc=$?
printf '%s\\n' "$apps"
echo "@@exit $rc"
printf '%s\\n' "$apps" | while IFS=, read -r pid rest; do
  case "$pid" in ''|*[!0-9]*) continue ;; esac
  echo "@@cgroup $pid"
  cat "/proc/$pid/cgroup" 2>/dev/null
done
"""


#: The same with ``nvidia-smi -q -x``: one section, then the cgroup files of
#: the pids its ``<pid>`` elements name.
HELPER_XML_SCRIPT = """\
echo '@@xml'
out=$(nvidia-smi -q -x 2>&1)
rc=$?
printf '%s\\n' "$out"
echo "@@exit $rc"
printf '%s\\n' "$out" | sed -n 's:.*<pid>\\([0-9][0-9]*\\)</pid>.*:\\1:p' |
while read -r pid; do
  echo "@@cgroup $pid"
  cat "/proc/$pid/cgroup" 2>/dev/null
done
"""


def helper_command(xml=False):
    """Return the GPU helper's command: the script and its arguments."""
    if xml:
        return ["sh", "-c", HELPER_XML_SCRIPT, "gpu-sample"]
    return [
        "sh",
        "-c",
        HELPER_SCRIPT,
        "gpu-sample",
        ",".join(QUERY_GPU_FIELDS),
        ",".join(QUERY_APPS_FIELDS),
    ]


def parse_helper_output(text):
    """Return ``{"gpus": (text, exit), "apps": (text, exit), "cgroups":
    {pid: text}}`` of :data:`HELPER_SCRIPT`'s output."""
    sections = {"cgroups": {}}
    name, lines = None, []

    def close():
        if name is None:
            return
        body = "\n".join(lines)
        if name.startswith("cgroup "):
            sections["cgroups"][int(name.split()[1])] = body
        else:
            sections[name] = [body, None]

    for line in text.splitlines():
        if line.startswith("@@exit ") and name in ("gpus", "apps", "xml"):
            close()
            sections[name][1] = int(line.split()[1])
            name, lines = None, []
        elif line.startswith("@@"):
            close()
            name, lines = line[2:].strip(), []
        else:
            lines.append(line)
    close()
    for key in ("xml",) if "xml" in sections else ("gpus", "apps"):
        if key not in sections or sections[key][1] is None:
            raise CaptureError(f"GPU helper output: section {key} missing or cut off")
        sections[key] = tuple(sections[key])
    return sections


class DockerSmiSource:
    """nvidia-smi in a GPU helper container on the environment's Docker host."""

    name = "docker"

    def __init__(
        self, environment, *, image=None, gpus=True, owner="gpu-sampler", xml=False
    ):
        self.environment = environment
        self.image = image
        self.gpus = gpus
        self.owner = owner
        self.xml = xml

    def read(self):
        environment = self.environment
        image = self.image or engine.gpu_image(environment)
        try:
            result = engine.run_gpu_helper(
                engine.client_for(environment),
                environment,
                helper_command(self.xml),
                image=image,
                gpus=self.gpus,
                owner=self.owner,
            )
        except engine.EngineError as exc:
            raise GpuUnavailable(f"GPU container: {exc}") from exc
        text = result.stdout.decode("utf-8", "replace")
        if result.exit_code != 0:
            raise GpuUnavailable(
                f"GPU container ({image}) exited {result.exit_code}: "
                f"{_first_line(result.stderr.decode('utf-8', 'replace') or text)}"
            )
        sections = parse_helper_output(text)
        gpu_text, gpu_exit = sections["xml" if self.xml else "gpus"]
        if gpu_exit == 127:
            raise GpuUnavailable(
                f"GPU container: nvidia-smi is not in image {image} (the NVIDIA "
                "container toolkit adds it to glibc-based images; set "
                "settings.gpu_image to one)"
            )
        if gpu_exit != 0:
            raise GpuUnavailable(
                f"GPU container: nvidia-smi exit {gpu_exit}: {_first_line(gpu_text)}"
            )
        if self.xml:
            gpus, processes = parse_smi_xml(gpu_text)
        else:
            gpus, processes = parse_query_gpu(gpu_text), None
        if not gpus:
            raise GpuUnavailable("GPU container: nvidia-smi found no GPU")
        if processes is not None:
            return HostReading(self.name, gpus, processes, sections["cgroups"])
        apps_text, apps_exit = sections["apps"]
        if apps_exit != 0:
            raise GpuUnavailable(
                f"GPU container: nvidia-smi --query-compute-apps exit {apps_exit}: "
                f"{_first_line(apps_text)}"
            )
        processes = parse_compute_apps(apps_text)
        return HostReading(self.name, gpus, processes, sections["cgroups"])

    def close(self):
        pass


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no output)"

"""Parse what ``nvidia-smi`` and NVML report into :mod:`gpu.readings`.

The sources hand their raw output to these functions and nothing else
turns text into figures, so the captures in ``tests/fixtures/gpu/`` go
through exactly the code the sampler runs.

``nvidia-smi --query-gpu=... --format=csv`` prints a header with units
(``memory.used [MiB]``) and values with units (``42099 MiB``); with
``--format=csv,noheader,nounits`` neither, and the columns are the fields
asked for, in order. Both are read here: a header decides the columns, and
without one :data:`QUERY_GPU_FIELDS` (or the ``fields`` given) does. A unit
other than the one expected is an error, not a silent misreading.
``[N/A]``, ``[Not Supported]`` and the like become None. ``nvidia-smi -q
-x`` (``settings.gpu_query: xml``) gives the same figures and the processes
in one document.
"""

import re
import xml.etree.ElementTree as ET

from .readings import MIB, GpuReading, ProcessReading

__all__ = [
    "QUERY_APPS_FIELDS",
    "QUERY_GPU_FIELDS",
    "CaptureError",
    "parse_compute_apps",
    "parse_gpu_list",
    "parse_nvml",
    "parse_query_gpu",
    "parse_smi_xml",
]

#: The fields the sampler asks ``nvidia-smi --query-gpu`` for, in order.
QUERY_GPU_FIELDS = (
    "index",
    "uuid",
    "name",
    "driver_version",
    "pci.bus_id",
    "temperature.gpu",
    "utilization.gpu",
    "utilization.memory",
    "memory.total",
    "memory.used",
    "memory.free",
    "power.draw",
    "power.limit",
    "fan.speed",
    "pstate",
    "clocks.sm",
    "clocks.mem",
    "clocks.max.sm",
    "ecc.errors.uncorrected.volatile.total",
)
#: The fields the sampler asks ``nvidia-smi --query-compute-apps`` for.
QUERY_APPS_FIELDS = ("pid", "process_name", "gpu_uuid", "used_memory")

# Values nvidia-smi prints instead of a figure.
_NOT_AVAILABLE = {
    "",
    "n/a",
    "[n/a]",
    "[not supported]",
    "[unknown error]",
    "[insufficient permissions]",
    "[gpu is lost]",
    "[gpu requires reset]",
}

# Kinds of value: how text becomes a figure.
_STR, _INT, _FLOAT, _MIB = "str", "int", "float", "MiB"


class _Column:
    """One field of a query: its names, the reading's attribute, its unit."""

    def __init__(self, field, attribute, kind, unit=None, header=None):
        self.field = field
        self.attribute = attribute
        self.kind = kind
        self.unit = unit
        # What the header calls it when that differs from the query name.
        self.header = header or field


_GPU_COLUMNS = [
    _Column("index", "index", _INT),
    _Column("uuid", "uuid", _STR),
    _Column("name", "name", _STR),
    _Column("driver_version", "driver_version", _STR),
    _Column("pci.bus_id", "pci_bus_id", _STR),
    _Column("temperature.gpu", "temperature_c", _INT, "C"),
    _Column("utilization.gpu", "utilization_gpu", _INT, "%"),
    _Column("utilization.memory", "utilization_memory", _INT, "%"),
    _Column("memory.total", "memory_total_bytes", _MIB, "MiB"),
    _Column("memory.used", "memory_used_bytes", _MIB, "MiB"),
    _Column("memory.free", "memory_free_bytes", _MIB, "MiB"),
    _Column("power.draw", "power_draw_w", _FLOAT, "W"),
    _Column("power.limit", "power_limit_w", _FLOAT, "W"),
    _Column("fan.speed", "fan_percent", _INT, "%"),
    _Column("pstate", "pstate", _STR),
    _Column("clocks.sm", "clock_sm_mhz", _INT, "MHz", header="clocks.current.sm"),
    _Column("clocks.mem", "clock_mem_mhz", _INT, "MHz", header="clocks.current.memory"),
    _Column("clocks.max.sm", "clock_sm_max_mhz", _INT, "MHz"),
    _Column("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected", _INT),
]
_APP_COLUMNS = [
    _Column("pid", "pid", _INT),
    _Column("process_name", "name", _STR),
    _Column("gpu_uuid", "gpu_uuid", _STR),
    _Column("used_memory", "used_memory_bytes", _MIB, "MiB", header="used_gpu_memory"),
]


class CaptureError(ValueError):
    """Output of nvidia-smi or NVML that cannot be read; says where and why."""


def _by_name(columns):
    """Return {query name or header name: column}."""
    table = {}
    for column in columns:
        table[column.field] = column
        table[column.header] = column
    return table


_GPU_BY_NAME = _by_name(_GPU_COLUMNS)
_APP_BY_NAME = _by_name(_APP_COLUMNS)


def _value(text, column, where):
    """Return the figure ``text`` stands for in ``column``, or None."""
    text = text.strip()
    if text.lower() in _NOT_AVAILABLE:
        return None
    if column.kind == _STR:
        return text
    number, _, unit = text.partition(" ")
    if unit and unit != column.unit:
        raise CaptureError(
            f"{where}: {text!r} is in {unit}, expected "
            f"{column.unit or 'a plain number'}"
        )
    try:
        if column.kind == _INT:
            return int(number)
        if column.kind == _FLOAT:
            return float(number)
        return int(float(number) * MIB)
    except ValueError:
        raise CaptureError(f"{where}: {text!r} is not a number") from None


def _header(cells, table, what):
    """Return the columns a header row names (None for unknown ones)."""
    columns = []
    for cell in cells:
        name, _, unit = cell.strip().partition(" [")
        unit = unit.rstrip("]")
        column = table.get(name)
        if column is not None and unit and column.unit and unit != column.unit:
            raise CaptureError(
                f"{what}, header: column {name} is in {unit}, expected {column.unit}"
            )
        columns.append(column)
    return columns


def _rows(text, table, fields, what, *, name_field=None):
    """Yield ``(line number, {attribute: value})`` of a CSV query's output.

    ``name_field`` is the one column whose text may itself hold ", " (a
    process name): extra cells are joined back into it.
    """
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        return
    first = lines[0][1].split(", ")
    if first[0].strip().partition(" [")[0] in table:
        columns = _header(first, table, what)
        lines = lines[1:]
    else:
        try:
            columns = [table[name] for name in fields]
        except KeyError as exc:
            raise CaptureError(f"{what}: unknown field {exc.args[0]!r}") from None
    names = [c.field if c else None for c in columns]
    for number, line in lines:
        cells = line.split(", ")
        if len(cells) > len(columns) and name_field in names:
            i = names.index(name_field)
            extra = len(cells) - len(columns)
            cells[i : i + extra + 1] = [", ".join(cells[i : i + extra + 1])]
        if len(cells) != len(columns):
            raise CaptureError(
                f"{what}, line {number}: {len(cells)} values, expected "
                f"{len(columns)} ({', '.join(n or '?' for n in names)})"
            )
        values = {}
        for cell, column in zip(cells, columns, strict=True):
            if column is None:
                continue
            where = f"{what}, line {number}, field {column.field}"
            values[column.attribute] = _value(cell, column, where)
        yield number, values


def parse_query_gpu(text, *, fields=QUERY_GPU_FIELDS):
    """Return the :class:`GpuReading` of each row of ``--query-gpu`` output.

    With a header row the columns are read from it; without one they are
    ``fields``, in order (``--format=csv,noheader,nounits``). Output that
    says no GPU was found gives an empty list.
    """
    what = "nvidia-smi --query-gpu output"
    if text.strip().startswith("No devices were found"):
        return []
    return [
        GpuReading(**values) for _, values in _rows(text, _GPU_BY_NAME, fields, what)
    ]


def parse_compute_apps(text, *, fields=QUERY_APPS_FIELDS):
    """Return the :class:`ProcessReading` of each row of
    ``--query-compute-apps`` output (header optional, as for GPUs)."""
    what = "nvidia-smi --query-compute-apps output"
    stripped = text.strip()
    if not stripped or stripped.startswith("No running"):
        return []
    return [
        ProcessReading(**values)
        for _, values in _rows(
            text, _APP_BY_NAME, fields, what, name_field="process_name"
        )
    ]


_LIST_RE = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")


def parse_gpu_list(text):
    """Return ``[(index, name, uuid)]`` of ``nvidia-smi -L`` output.

    Lines that do not describe a GPU (MIG devices, messages) are skipped.
    """
    found = []
    for line in text.splitlines():
        match = _LIST_RE.match(line.strip())
        if match:
            found.append((int(match[1]), match[2], match[3]))
    return found


# -- nvidia-smi -q -x -------------------------------------------------------

_XML_FIGURES = {
    # reading attribute: (paths tried in order, column describing the value)
    "temperature_c": (["temperature/gpu_temp"], _Column("gpu_temp", "", _INT, "C")),
    "utilization_gpu": (
        ["utilization/gpu_util"],
        _Column("gpu_util", "", _INT, "%"),
    ),
    "utilization_memory": (
        ["utilization/memory_util"],
        _Column("memory_util", "", _INT, "%"),
    ),
    "memory_total_bytes": (
        ["fb_memory_usage/total"],
        _Column("fb_memory_usage.total", "", _MIB, "MiB"),
    ),
    "memory_used_bytes": (
        ["fb_memory_usage/used"],
        _Column("fb_memory_usage.used", "", _MIB, "MiB"),
    ),
    "memory_free_bytes": (
        ["fb_memory_usage/free"],
        _Column("fb_memory_usage.free", "", _MIB, "MiB"),
    ),
    # power.draw is the one-second average on current drivers; older
    # schemas have only power_readings/power_draw.
    "power_draw_w": (
        [
            "gpu_power_readings/average_power_draw",
            "gpu_power_readings/power_draw",
            "power_readings/power_draw",
        ],
        _Column("power_draw", "", _FLOAT, "W"),
    ),
    "power_limit_w": (
        [
            "gpu_power_readings/current_power_limit",
            "gpu_power_readings/power_limit",
            "power_readings/power_limit",
        ],
        _Column("power_limit", "", _FLOAT, "W"),
    ),
    "fan_percent": (["fan_speed"], _Column("fan_speed", "", _INT, "%")),
    "pstate": (["performance_state"], _Column("performance_state", "", _STR)),
    "clock_sm_mhz": (["clocks/sm_clock"], _Column("clocks.sm", "", _INT, "MHz")),
    "clock_mem_mhz": (["clocks/mem_clock"], _Column("clocks.mem", "", _INT, "MHz")),
    "clock_sm_max_mhz": (
        ["max_clocks/sm_clock"],
        _Column("max_clocks.sm", "", _INT, "MHz"),
    ),
}


def _xml_ecc(gpu, where):
    """Return the volatile uncorrected ECC count of a ``<gpu>``, or None."""
    volatile = gpu.find("ecc_errors/volatile")
    if volatile is None:
        return None
    column = _Column("ecc_errors.volatile", "", _INT)
    legacy = volatile.find("double_bit/total")
    if legacy is not None:
        return _value(legacy.text or "", column, where)
    counts = [
        _value(child.text or "", column, f"{where}/{child.tag}")
        for child in volatile
        if "uncorrectable" in child.tag
    ]
    counts = [c for c in counts if c is not None]
    return sum(counts) if counts else None


def parse_smi_xml(text):
    """Return ``(gpus, processes)`` of ``nvidia-smi -q -x`` output."""
    what = "nvidia-smi -q -x output"
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CaptureError(f"{what}: not XML ({exc})") from None
    if root.tag != "nvidia_smi_log":
        raise CaptureError(
            f"{what}: root element is <{root.tag}>, not <nvidia_smi_log>"
        )
    driver = (root.findtext("driver_version") or "").strip() or None
    gpus, processes = [], []
    for index, gpu in enumerate(root.findall("gpu")):
        where = f"{what}, gpu {gpu.get('id') or index}"
        values = {
            "index": index,
            "uuid": (gpu.findtext("uuid") or "").strip() or None,
            "name": (gpu.findtext("product_name") or "").strip() or None,
            "driver_version": driver,
            "pci_bus_id": gpu.get("id") or gpu.findtext("pci/pci_bus_id"),
            "ecc_uncorrected": _xml_ecc(gpu, f"{where}, ecc_errors/volatile"),
        }
        for attribute, (paths, column) in _XML_FIGURES.items():
            node = next(
                (found for p in paths if (found := gpu.find(p)) is not None), None
            )
            values[attribute] = (
                None
                if node is None
                else _value(node.text or "", column, f"{where}, {paths[0]}")
            )
        gpus.append(GpuReading(**values))
        app_column = _Column("used_memory", "", _MIB, "MiB")
        for info in gpu.findall("processes/process_info"):
            pid = _value(
                info.findtext("pid") or "", _Column("pid", "", _INT), f"{where}, pid"
            )
            processes.append(
                ProcessReading(
                    pid=pid,
                    name=(info.findtext("process_name") or "").strip() or None,
                    gpu_uuid=values["uuid"],
                    used_memory_bytes=_value(
                        info.findtext("used_memory") or "",
                        app_column,
                        f"{where}, process {pid}, used_memory",
                    ),
                )
            )
    return gpus, processes


# -- NVML -------------------------------------------------------------------


def _number(raw, key, where, kind=int):
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CaptureError(f"{where}: {key} is {value!r}, not a number")
    return kind(value)


def parse_nvml(raw):
    """Return ``(gpus, processes)`` of a reading made through NVML.

    ``raw`` is what :func:`gpu.sources.read_nvml` collects (and what
    ``nvml-load.json`` holds): ``{"driver", "gpus": [{"index", "name",
    "uuid", "memory_total", "memory_used", "memory_free" (bytes),
    "util_gpu", "util_mem", "temperature", "power_mw", "power_limit_mw",
    ..., "procs": [{"pid", "used" (bytes), "name"}]}]}``. A key that is
    missing or None (NVML said "not supported") gives None.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("gpus"), list):
        raise CaptureError("NVML reading: expected a mapping with a list 'gpus'")
    driver = raw.get("driver")
    gpus, processes = [], []
    for position, gpu in enumerate(raw["gpus"]):
        where = f"NVML reading, gpu {position}"
        if not isinstance(gpu, dict):
            raise CaptureError(f"{where}: expected a mapping, got {gpu!r}")
        power = _number(gpu, "power_mw", where)
        limit = _number(gpu, "power_limit_mw", where)
        pstate = _number(gpu, "pstate", where)
        reading = GpuReading(
            index=_number(gpu, "index", where),
            uuid=gpu.get("uuid"),
            name=gpu.get("name"),
            driver_version=driver,
            pci_bus_id=gpu.get("pci_bus_id"),
            temperature_c=_number(gpu, "temperature", where),
            utilization_gpu=_number(gpu, "util_gpu", where),
            utilization_memory=_number(gpu, "util_mem", where),
            memory_total_bytes=_number(gpu, "memory_total", where),
            memory_used_bytes=_number(gpu, "memory_used", where),
            memory_free_bytes=_number(gpu, "memory_free", where),
            power_draw_w=None if power is None else power / 1000,
            power_limit_w=None if limit is None else limit / 1000,
            fan_percent=_number(gpu, "fan", where),
            # NVML's performance state 32 means "unknown".
            pstate=None if pstate is None or pstate == 32 else f"P{pstate}",
            clock_sm_mhz=_number(gpu, "clock_sm", where),
            clock_mem_mhz=_number(gpu, "clock_mem", where),
            clock_sm_max_mhz=_number(gpu, "clock_sm_max", where),
            ecc_uncorrected=_number(gpu, "ecc_uncorrected", where),
            xid_errors=_number(gpu, "xid_errors", where),
        )
        gpus.append(reading)
        for proc in gpu.get("procs") or []:
            processes.append(
                ProcessReading(
                    pid=_number(proc, "pid", f"{where}, process"),
                    name=proc.get("name"),
                    gpu_uuid=reading.uuid,
                    used_memory_bytes=_number(
                        proc, "used", f"{where}, process {proc.get('pid')}"
                    ),
                )
            )
    return gpus, processes

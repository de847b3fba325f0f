"""Every H200 capture parsed exactly, through the functions the sources use.

The figures below are the captures' own (MiB x 1,048,576 for bytes, watts
as printed, NVML's milliwatts / 1000); ``[N/A]`` is None, never zero.
"""

import json

import pytest

from gpu.parsing import (
    QUERY_GPU_FIELDS,
    CaptureError,
    parse_compute_apps,
    parse_gpu_list,
    parse_nvml,
    parse_query_gpu,
    parse_smi_xml,
)
from gpu.readings import MIB, GpuReading, ProcessReading
from tests.gpu.conftest import CAPTURES, H200_UUID, SHARED_CAPTURES, capture

COMMON = {
    "index": 0,
    "uuid": H200_UUID,
    "name": "NVIDIA H200",
    "driver_version": "580.159.04",
    "pci_bus_id": "00000000:00:06.0",
    "memory_total_bytes": 143771 * MIB,
    "power_limit_w": 700.0,
    "fan_percent": None,
    "pstate": "P0",
    "clock_mem_mhz": 3201,
    "clock_sm_max_mhz": 1980,
    "ecc_uncorrected": 0,
    "xid_errors": None,
}
IDLE = GpuReading(
    **COMMON,
    temperature_c=35,
    utilization_gpu=0,
    utilization_memory=0,
    memory_used_bytes=0,
    memory_free_bytes=143156 * MIB,
    power_draw_w=79.62,
    clock_sm_mhz=345,
)
LOAD = GpuReading(
    **COMMON,
    temperature_c=57,
    utilization_gpu=100,
    utilization_memory=24,
    memory_used_bytes=42099 * MIB,
    memory_free_bytes=101058 * MIB,
    power_draw_w=692.30,
    clock_sm_mhz=1470,
)
PYTHON3 = ProcessReading(
    pid=416, name="python3", gpu_uuid=H200_UUID, used_memory_bytes=42090 * MIB
)

# Every capture and the test that parses it: a new capture without a test
# fails test_every_capture_is_parsed.
PARSED = {
    "query-gpu-idle.csv": "test_query_gpu_idle_capture",
    "query-gpu-load.csv": "test_query_gpu_load_capture",
    "query-gpu-stream.csv": "test_query_gpu_stream_capture_without_header_or_units",
    "query-compute-apps-load.csv": "test_compute_apps_capture",
    "nvidia-smi-q-idle.xml": "test_smi_xml_idle_capture",
    "nvidia-smi-q-load.xml": "test_smi_xml_load_capture",
    "nvml-load.json": "test_nvml_load_capture",
    "probe.log": "test_gpu_list_probe_capture",
}


def test_every_capture_is_parsed():
    captures = {p.name for p in CAPTURES.iterdir() if p.name != "README.md"}
    assert captures == set(PARSED)
    assert all(name in globals() for name in PARSED.values())


@pytest.mark.skipif(
    not (SHARED_CAPTURES / "h200").is_dir(), reason="../shared is not here"
)
def test_captures_are_the_shared_ones():
    shared = SHARED_CAPTURES / "h200"
    names = sorted(p.name for p in shared.iterdir() if p.name != "README.md")
    assert names == sorted(PARSED)
    for name in names:
        assert (shared / name).read_bytes() == (CAPTURES / name).read_bytes(), name


def test_query_gpu_idle_capture():
    assert parse_query_gpu(capture("query-gpu-idle.csv")) == [IDLE]


def test_query_gpu_load_capture():
    assert parse_query_gpu(capture("query-gpu-load.csv")) == [LOAD]


def test_query_gpu_stream_capture_without_header_or_units():
    readings = parse_query_gpu(capture("query-gpu-stream.csv"))
    assert [
        (r.temperature_c, r.utilization_gpu, r.power_draw_w, r.clock_sm_mhz)
        for r in readings
    ] == [
        (40, 1, 249.00, 1980),
        (40, 0, 130.71, 1980),
        (39, 0, 132.06, 1980),
        (39, 0, 128.45, 1980),
        (38, 0, 126.39, 420),
        (37, 0, 97.89, 345),
    ]
    first = readings[0]
    assert first.memory_total_bytes == 143771 * MIB
    assert first.memory_used_bytes == 0
    assert first.memory_free_bytes == 143156 * MIB
    # The fan column is [N/A] on this board: unknown, not 0 %.
    assert {r.fan_percent for r in readings} == {None}
    assert {(r.uuid, r.pstate, r.ecc_uncorrected) for r in readings} == {
        (H200_UUID, "P0", 0)
    }


def test_compute_apps_capture():
    assert parse_compute_apps(capture("query-compute-apps-load.csv")) == [PYTHON3]


def test_smi_xml_idle_capture():
    gpus, processes = parse_smi_xml(capture("nvidia-smi-q-idle.xml"))
    # The XML's power draw is the one-second average (79.64 W), read a moment
    # apart from the CSV capture's 79.62 W.
    assert gpus == [GpuReading(**{**IDLE.__dict__, "power_draw_w": 79.64})]
    assert processes == []


def test_smi_xml_load_capture():
    gpus, processes = parse_smi_xml(capture("nvidia-smi-q-load.xml"))
    assert gpus == [GpuReading(**{**LOAD.__dict__, "power_draw_w": 691.00})]
    assert processes == [PYTHON3]


def test_nvml_load_capture():
    gpus, processes = parse_nvml(json.loads(capture("nvml-load.json")))
    # NVML's "used" counts the 616 MiB the driver reserves, which nvidia-smi
    # leaves out; what NVML does not report here is None.
    assert gpus == [
        GpuReading(
            index=0,
            uuid=H200_UUID,
            name="NVIDIA H200",
            driver_version="580.159.04",
            temperature_c=58,
            utilization_gpu=100,
            utilization_memory=25,
            memory_total_bytes=150754820096,
            memory_used_bytes=44788744192,
            memory_free_bytes=105966075904,
            power_draw_w=690.284,
            power_limit_w=700.0,
        )
    ]
    assert processes == [
        ProcessReading(pid=416, gpu_uuid=H200_UUID, used_memory_bytes=44134563840)
    ]
    # Both tools agree on the process's memory to the byte.
    assert processes[0].used_memory_bytes == PYTHON3.used_memory_bytes


def test_gpu_list_probe_capture():
    assert parse_gpu_list(capture("probe.log")) == [(0, "NVIDIA H200", H200_UUID)]


def test_query_gpu_not_available_values_are_none_never_zero():
    line = capture("query-gpu-stream.csv").splitlines()[0].split(", ")
    for i in (5, 6, 11, 13, 18):  # temperature, util, power, fan, ecc
        line[i] = "[N/A]"
    line[9] = "[Not Supported]"  # memory.used
    (reading,) = parse_query_gpu(", ".join(line))
    assert reading.temperature_c is None
    assert reading.utilization_gpu is None
    assert reading.power_draw_w is None
    assert reading.fan_percent is None
    assert reading.ecc_uncorrected is None
    assert reading.memory_used_bytes is None
    assert reading.memory_total_bytes == 143771 * MIB


def test_query_gpu_columns_follow_the_header_not_the_order():
    lines = capture("query-gpu-load.csv").splitlines()
    header, row = lines[0].split(", "), lines[1].split(", ")
    order = list(reversed(range(len(header))))
    text = ", ".join(header[i] for i in order) + "\n" + ", ".join(row[i] for i in order)
    assert parse_query_gpu(text) == [LOAD]


def test_query_gpu_missing_column_is_none():
    lines = capture("query-gpu-load.csv").splitlines()
    header, row = lines[0].split(", "), lines[1].split(", ")
    keep = [i for i, name in enumerate(header) if not name.startswith("power.draw")]
    text = ", ".join(header[i] for i in keep) + "\n" + ", ".join(row[i] for i in keep)
    (reading,) = parse_query_gpu(text)
    assert reading.power_draw_w is None
    assert reading.power_limit_w == 700.0


def test_query_gpu_unexpected_unit_names_line_and_field():
    text = capture("query-gpu-load.csv").replace("42099 MiB", "41.1 GiB")
    with pytest.raises(CaptureError) as caught:
        parse_query_gpu(text)
    assert str(caught.value) == (
        "nvidia-smi --query-gpu output, line 2, field memory.used: "
        "'41.1 GiB' is in GiB, expected MiB"
    )


def test_query_gpu_header_in_another_unit_is_refused():
    text = capture("query-gpu-load.csv").replace("power.draw [W]", "power.draw [mW]")
    with pytest.raises(CaptureError, match=r"header: column power.draw is in mW"):
        parse_query_gpu(text)


def test_query_gpu_wrong_number_of_values_names_the_line():
    text = capture("query-gpu-stream.csv").splitlines()[2].rsplit(", ", 1)[0]
    with pytest.raises(CaptureError) as caught:
        parse_query_gpu("\n\n" + text)
    assert str(caught.value).startswith(
        "nvidia-smi --query-gpu output, line 3: 18 values, expected 19 (index, uuid"
    )


def test_query_gpu_text_where_a_number_belongs():
    text = capture("query-gpu-stream.csv").replace(", 40, 1, ", ", hot, 1, ", 1)
    with pytest.raises(CaptureError) as caught:
        parse_query_gpu(text)
    assert str(caught.value) == (
        "nvidia-smi --query-gpu output, line 1, field temperature.gpu: "
        "'hot' is not a number"
    )


def test_query_gpu_no_devices():
    assert parse_query_gpu("No devices were found\n") == []


def test_query_gpu_fields_are_the_captured_ones():
    """The sampler asks exactly what the captures answered."""
    header = capture("query-gpu-idle.csv").splitlines()[0].split(", ")
    assert len(header) == len(QUERY_GPU_FIELDS)


def test_compute_apps_process_name_with_comma_and_unknown_memory():
    text = (
        "pid, process_name, gpu_uuid, used_gpu_memory [MiB]\n"
        f"7, /opt/app, v2/serve, {H200_UUID}, [N/A]\n"
    )
    assert parse_compute_apps(text) == [
        ProcessReading(pid=7, name="/opt/app, v2/serve", gpu_uuid=H200_UUID)
    ]


def test_compute_apps_header_only_is_no_process():
    header = capture("query-compute-apps-load.csv").splitlines()[0]
    assert parse_compute_apps(header + "\n") == []
    assert parse_compute_apps("") == []


def test_smi_xml_not_xml():
    with pytest.raises(CaptureError, match=r"nvidia-smi -q -x output: not XML"):
        parse_smi_xml("NVIDIA-SMI has failed because it couldn't communicate")


def test_nvml_reading_with_text_for_a_number():
    raw = json.loads(capture("nvml-load.json"))
    raw["gpus"][0]["power_mw"] = "690 W"
    with pytest.raises(CaptureError) as caught:
        parse_nvml(raw)
    assert str(caught.value) == "NVML reading, gpu 0: power_mw is '690 W', not a number"

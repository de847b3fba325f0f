"""Fixtures of the GPU tests: the H200 captures, samples made of them, and a
stand-in ``nvidia-smi`` that replays them.

No machine here has a GPU. The stand-in is an external program replaced at
its boundary: a shell script that answers exactly the two queries the
sampler makes (it refuses any other arguments) with the captured output,
the compute-apps capture's pid replaced by the pid of a real container the
test started, so attribution runs on that container's real cgroup.
"""

import io
import tarfile
import time
from pathlib import Path

import pytest

from gpu.parsing import (
    QUERY_APPS_FIELDS,
    QUERY_GPU_FIELDS,
    parse_compute_apps,
    parse_query_gpu,
)
from gpu.readings import Sample
from tests.conftest import RUN_ID

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu" / "h200"
SHARED_CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "gpu"
CAPTURED_PID = 416
H200_UUID = "GPU-3eb6a623-0b8a-16f1-9d65-348d766271f3"

STANDIN = """#!/bin/sh
# Stand-in nvidia-smi: replays the H200 captures of {dir}.
if [ "$1" = "--query-gpu={gpu_fields}" ] && [ "$2" = "--format=csv" ]; then
  exec cat "{dir}/query-gpu-{state}.csv"
fi
if [ "$1" = "--query-compute-apps={app_fields}" ] && [ "$2" = "--format=csv" ]; then
  exec cat "{dir}/query-compute-apps.csv"
fi
if [ "$1" = "-q" ] && [ "$2" = "-x" ]; then
  exec cat "{dir}/nvidia-smi-q.xml"
fi
if [ "$1" = "-L" ]; then
  exec head -n 1 "{dir}/probe.log"
fi
echo "stand-in nvidia-smi: unexpected arguments: $*" >&2
exit 2
"""


def capture(name):
    """Return the text of one capture."""
    return (CAPTURES / name).read_text()


def apps_capture(pid=None):
    """Return the compute-apps capture, its process given ``pid`` if set."""
    text = capture("query-compute-apps-load.csv")
    if pid is None:
        return text
    return text.replace(f"\n{CAPTURED_PID}, ", f"\n{pid}, ")


def load_sample(environment, *, state="load", processes=None, taken=None):
    """Return a Sample of the ``state`` capture for ``environment``."""
    gpus = parse_query_gpu(capture(f"query-gpu-{state}.csv"))
    if processes is None:
        processes = parse_compute_apps(apps_capture()) if state == "load" else []
    return Sample(
        environment=environment,
        host="unix:///var/run/docker.sock",
        source="nvidia-smi",
        taken=time.time() if taken is None else taken,
        gpus=gpus,
        processes=processes,
    )


def standin_files(folder, *, pid=None, state="load", mount=None):
    """Write the stand-in and its captures into ``folder``; return its path.

    ``mount`` is where ``folder`` will be seen from (inside an image).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in (f"query-gpu-{state}.csv", "probe.log"):
        (folder / name).write_text(capture(name))
    (folder / "query-compute-apps.csv").write_text(apps_capture(pid))
    xml = capture(f"nvidia-smi-q-{state}.xml")
    if pid is not None:
        xml = xml.replace(f"<pid>{CAPTURED_PID}</pid>", f"<pid>{pid}</pid>")
    (folder / "nvidia-smi-q.xml").write_text(xml)
    script = folder / "nvidia-smi"
    script.write_text(
        STANDIN.format(
            dir=mount or folder,
            gpu_fields=",".join(QUERY_GPU_FIELDS),
            app_fields=",".join(QUERY_APPS_FIELDS),
            state=state,
        )
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def standin_smi(tmp_path):
    """Return a function writing a stand-in nvidia-smi; returns its path."""

    def make(pid=None, state="load"):
        return standin_files(tmp_path / f"smi-{state}-{pid}", pid=pid, state=state)

    return make


@pytest.fixture
def standin_image(docker_client, tmp_path):
    """Return a function building an image with the stand-in nvidia-smi on
    PATH, on the locally built Debian base (glibc and sh, as the NVIDIA
    toolkit's nvidia-smi needs); the images are removed afterwards."""
    built = []

    def build(pid):
        folder = tmp_path / f"image-{pid}"
        standin_files(folder, pid=pid, mount="/standin")
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            dockerfile = (
                b"FROM stackportal/base:local\n"
                b"COPY standin /standin\n"
                b"RUN ln -s /standin/nvidia-smi /usr/local/bin/nvidia-smi\n"
            )
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(folder, arcname="standin")
        context.seek(0)
        tag = f"portal-test/nvidia-smi-standin:{RUN_ID}-{pid}"
        docker_client.images.build(
            fileobj=context, custom_context=True, tag=tag, rm=True
        )
        built.append(tag)
        return tag

    yield build
    for tag in built:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001  (teardown: the image may be in use)
            pass

"""What GPU status needs of a Docker host: a GPU helper, the running containers.

A host's GPUs are read without an agent on it: :func:`run_gpu_helper` runs a
command in a short-lived, labelled helper container that is handed the
host's GPUs (a DeviceRequest, so the NVIDIA container toolkit injects
``nvidia-smi`` and the driver's libraries into any glibc image) and that
shares the host's PID and cgroup namespaces, so it sees the host's processes
and the cgroup of each (which names its container). A host that cannot give
containers GPUs is an :class:`EngineError` that says so.

:func:`running_containers` is the listing GPU processes are matched
against: every running container of the host, the portal's or not, by id.
"""

from docker.errors import APIError
from docker.types import DeviceRequest
from requests.exceptions import RequestException

from .client import describe_host
from .errors import EngineError, api_error_text, engine_errors
from .helpers import helper_container

__all__ = [
    "DEFAULT_GPU_IMAGE",
    "GPU_HELPER_PURPOSE",
    "GpuHelperResult",
    "NoGpuSupport",
    "gpu_image",
    "run_gpu_helper",
    "running_containers",
]

GPU_HELPER_PURPOSE = "gpu.sample"
# Any image with glibc and sh: the toolkit adds nvidia-smi to it.
DEFAULT_GPU_IMAGE = "stackportal/base:local"


class NoGpuSupport(EngineError):
    """The Docker host cannot hand GPUs to containers."""


class GpuHelperResult:
    """How a GPU helper's command ended: exit code, stdout, stderr (bytes)."""

    def __init__(self, exit_code, stdout, stderr):
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return f"<GpuHelperResult exit={self.exit_code}>"


def gpu_image(environment):
    """Return the image of GPU helpers in ``environment`` (``settings.gpu_image``)."""
    return (getattr(environment, "settings", None) or {}).get(
        "gpu_image", DEFAULT_GPU_IMAGE
    )


def run_gpu_helper(
    client, environment, command, *, image=None, gpus=True, owner="", timeout=60
):
    """Run ``command`` (a list) in a GPU helper on the environment's host.

    The helper shares the host's PID and cgroup namespaces and has no
    network. With ``gpus`` it asks for every GPU with the ``utility``
    capability (nvidia-smi); a host whose engine cannot give containers
    GPUs raises :class:`NoGpuSupport`. The helper is removed afterwards.
    """
    image = image or gpu_image(environment)
    options = {"pid_mode": "host", "cgroupns": "host"}
    if gpus:
        options["device_requests"] = [
            DeviceRequest(count=-1, capabilities=[["gpu", "utility"]])
        ]
    where = describe_host(environment)
    with helper_container(
        client,
        environment=environment,
        purpose=GPU_HELPER_PURPOSE,
        owner=owner,
        image=image,
        command=list(command),
        **options,
    ) as cid:
        with engine_errors(f"GPU helper on the {where}"):
            try:
                client.api.start(cid)
            except APIError as exc:
                _raise_no_gpu(exc, where)
                raise
            try:
                status = client.api.wait(cid, timeout=timeout)
            except RequestException as exc:
                raise EngineError(
                    f"GPU helper on the {where} did not finish within "
                    f"{timeout} s: {exc}"
                ) from exc
            stdout = client.api.logs(cid, stdout=True, stderr=False)
            stderr = client.api.logs(cid, stdout=False, stderr=True)
    return GpuHelperResult(status.get("StatusCode"), stdout, stderr)


def _raise_no_gpu(exc, where):
    """Raise NoGpuSupport when ``exc`` says the engine has no GPU driver."""
    text = api_error_text(exc)
    if "could not select device driver" in text or "nvidia-container" in text:
        raise NoGpuSupport(
            f"the {where} cannot give containers GPUs (no NVIDIA container "
            f"toolkit there): {text}"
        ) from exc


def running_containers(client, environment):
    """Return ``{container id: list summary}`` of the host's running containers."""
    with engine_errors(f"{describe_host(environment)} is unreachable"):
        return {summary["Id"]: summary for summary in client.api.containers()}

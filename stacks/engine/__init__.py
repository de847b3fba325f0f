"""The Docker engine layer: the only code that talks to docker-py.

Every page, consumer, job and command of every app asks this package; none
imports ``docker`` itself (a test enforces it). It applies a
:class:`~.specs.StackPlan` through the Engine API (no ``docker compose``
binary), lists containers by label, streams logs and command output, runs
labelled helper containers and translates Docker's errors into
:class:`EngineError` messages for operators.

=================  ==========================================================
module             what it holds
=================  ==========================================================
``client``         clients per process and host, TLS/ssh, engine facts
``labels``         every label name and the label builders
``specs``          the dataclasses describing what to create; Compose names
``images``         make sure an image is on the host (pull with progress)
``resources``      networks and volumes
``containers``     the one container listing; reconcile by config hash; stop
``health``         wait until containers are healthy
``preflight``      GPU runtime and host port checks before a start
``streams``        Docker's multiplexed stream, split in bulk
``logs``           the one log streamer
``exec``           commands in containers with streamed stdout/stdin;
                   interactive sessions with a terminal (consoles)
``stats``          one resource usage sample per container
``helpers``        short-lived labelled helper containers (attached, streamed);
                   volume tar streams
``scratch``        throw-away copies of a service (its image, fresh volumes, a
                   network of their own) and the leftovers of such copies
``gpus``           GPU helper containers; running containers by id
``hostnet``        what holds addresses on a host: networks, routes, pools
``probes``         names resolved and health probed from inside networks
``errors``         :class:`EngineError` and the translation of Docker's errors
=================  ==========================================================
"""

from . import labels
from .client import (
    CLIENT_TIMEOUT,
    client_for,
    close_clients,
    describe_host,
    engine_facts,
    is_local_host,
)
from .containers import (
    DEFAULT_STOP_TIMEOUT,
    ContainerState,
    config_hash,
    container_create_options,
    list_containers,
    project_containers,
    reconcile_service,
    remove_container,
    service_states,
    start_container,
    stop_container,
    stop_timeout,
)
from .errors import EngineError, api_error_text, engine_errors
from .exec import (
    ExecResult,
    ExecSession,
    ExecStream,
    exec_run,
    exec_session,
    exec_stream,
)
from .gpus import (
    DEFAULT_GPU_IMAGE,
    GPU_HELPER_PURPOSE,
    GpuHelperResult,
    NoGpuSupport,
    gpu_image,
    run_gpu_helper,
    running_containers,
)
from .health import wait_ready
from .helpers import (
    DEFAULT_HELPER_IMAGE,
    HelperStream,
    empty_volume,
    helper_container,
    helper_image,
    helper_stream,
    list_helpers,
    read_volume,
    remove_helpers,
    run_helper,
    write_volume,
)
from .hostnet import (
    BUILTIN_ADDRESS_POOLS,
    HostAddress,
    HostNetwork,
    daemon_address_pools,
    host_addresses,
    host_networks,
    network_users,
    remove_network_id,
)
from .images import ensure_image
from .logs import LogStream, read_log, split_timestamp, stream_logs
from .preflight import check_gpu, check_ports, ips_overlap
from .probes import DEFAULT_PROBE_IMAGE, probe_image, resolve_names, run_probes
from .resources import (
    containers_using_volume,
    delete_network,
    ensure_network,
    ensure_volume,
    list_networks,
    list_volumes,
    network_by_name,
    overlapping_network,
    remove_network,
    remove_volume,
    volume_sizes,
)
from .scratch import (
    ScratchObject,
    list_scratch,
    published_port,
    remove_scratch,
    scratch_container,
    scratch_network,
    scratch_volume,
)
from .specs import MountSpec, describe_spec
from .stats import ContainerStats, container_stats, sample_stats
from .webapi import ApiAnswer, NoApiAnswer, api_request

__all__ = [
    "ScratchObject",
    "list_scratch",
    "published_port",
    "remove_scratch",
    "scratch_container",
    "scratch_network",
    "scratch_volume",
    "delete_network",
    "start_container",
    "volume_sizes",
    "remove_volume",
    "remove_network_id",
    "list_volumes",
    "list_networks",
    "empty_volume",
    "containers_using_volume",
    "BUILTIN_ADDRESS_POOLS",
    "CLIENT_TIMEOUT",
    "DEFAULT_GPU_IMAGE",
    "DEFAULT_HELPER_IMAGE",
    "DEFAULT_PROBE_IMAGE",
    "DEFAULT_STOP_TIMEOUT",
    "ContainerState",
    "ContainerStats",
    "EngineError",
    "GPU_HELPER_PURPOSE",
    "GpuHelperResult",
    "ApiAnswer",
    "ExecResult",
    "ExecSession",
    "ExecStream",
    "HelperStream",
    "HostAddress",
    "HostNetwork",
    "LogStream",
    "NoApiAnswer",
    "NoGpuSupport",
    "MountSpec",
    "api_error_text",
    "check_gpu",
    "check_ports",
    "client_for",
    "close_clients",
    "config_hash",
    "container_create_options",
    "daemon_address_pools",
    "container_stats",
    "describe_host",
    "describe_spec",
    "engine_errors",
    "engine_facts",
    "ensure_image",
    "ensure_network",
    "ensure_volume",
    "api_request",
    "exec_run",
    "exec_session",
    "exec_stream",
    "gpu_image",
    "helper_container",
    "helper_image",
    "helper_stream",
    "host_addresses",
    "host_networks",
    "ips_overlap",
    "is_local_host",
    "labels",
    "list_containers",
    "list_helpers",
    "network_by_name",
    "network_users",
    "overlapping_network",
    "probe_image",
    "project_containers",
    "read_log",
    "read_volume",
    "reconcile_service",
    "remove_container",
    "remove_helpers",
    "remove_network",
    "run_gpu_helper",
    "resolve_names",
    "run_probes",
    "run_helper",
    "running_containers",
    "sample_stats",
    "service_states",
    "split_timestamp",
    "stop_container",
    "stop_timeout",
    "stream_logs",
    "wait_ready",
    "write_volume",
]

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
``helpers``        short-lived labelled helper containers; volume tar streams
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
from .health import wait_ready
from .helpers import (
    DEFAULT_HELPER_IMAGE,
    helper_container,
    helper_image,
    list_helpers,
    read_volume,
    remove_helpers,
    run_helper,
    write_volume,
)
from .images import ensure_image
from .logs import LogStream, read_log, split_timestamp, stream_logs
from .preflight import check_gpu, check_ports, ips_overlap
from .resources import (
    ensure_network,
    ensure_volume,
    network_by_name,
    overlapping_network,
    remove_network,
)
from .specs import describe_spec
from .stats import ContainerStats, container_stats, sample_stats

__all__ = [
    "CLIENT_TIMEOUT",
    "DEFAULT_HELPER_IMAGE",
    "DEFAULT_STOP_TIMEOUT",
    "ContainerState",
    "ContainerStats",
    "EngineError",
    "ExecResult",
    "ExecSession",
    "ExecStream",
    "LogStream",
    "api_error_text",
    "check_gpu",
    "check_ports",
    "client_for",
    "close_clients",
    "config_hash",
    "container_create_options",
    "container_stats",
    "describe_host",
    "describe_spec",
    "engine_errors",
    "engine_facts",
    "ensure_image",
    "ensure_network",
    "ensure_volume",
    "exec_run",
    "exec_session",
    "exec_stream",
    "helper_container",
    "helper_image",
    "ips_overlap",
    "is_local_host",
    "labels",
    "list_containers",
    "list_helpers",
    "network_by_name",
    "overlapping_network",
    "project_containers",
    "read_log",
    "read_volume",
    "reconcile_service",
    "remove_container",
    "remove_helpers",
    "remove_network",
    "run_helper",
    "sample_stats",
    "service_states",
    "split_timestamp",
    "stop_container",
    "stop_timeout",
    "stream_logs",
    "wait_ready",
    "write_volume",
]

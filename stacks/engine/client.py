"""docker-py clients, one per process and Docker host."""

import os
import threading
from pathlib import Path

import docker
from docker.errors import DockerException

from .errors import EngineError, engine_errors

__all__ = [
    "CLIENT_TIMEOUT",
    "client_for",
    "close_clients",
    "describe_host",
    "engine_facts",
    "is_local_host",
]

CLIENT_TIMEOUT = 120

_clients = {}
_clients_lock = threading.Lock()


def describe_host(environment):
    """Return "Docker host <url> of environment <name>" for messages."""
    return f"Docker host {environment.docker_host} of environment {environment.name}"


def _tls_config(environment):
    """Return a TLSConfig from the environment's ``docker_cert_path`` setting."""
    settings = environment.settings or {}
    cert_path = settings.get("docker_cert_path")
    if not cert_path:
        return False
    path = Path(cert_path)
    return docker.tls.TLSConfig(
        client_cert=(str(path / "cert.pem"), str(path / "key.pem")),
        ca_cert=str(path / "ca.pem"),
        verify=settings.get("docker_tls_verify", True),
    )


def client_for(environment):
    """Return a docker-py client for the environment's Docker host.

    Clients are cached per process and host, so a worker reuses its
    connection pool; the pid is part of the key because a forked work horse
    must not share the parent's sockets. ``ssh://`` hosts go through the
    ``ssh`` binary (no paramiko).
    """
    host = environment.docker_host
    tls = _tls_config(environment)
    key = (os.getpid(), host, repr(getattr(tls, "cert", None)))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                client = docker.DockerClient(
                    base_url=host,
                    tls=tls,
                    timeout=CLIENT_TIMEOUT,
                    use_ssh_client=host.startswith("ssh://"),
                )
            except DockerException as exc:
                raise EngineError(
                    f"Cannot reach the {describe_host(environment)}: {exc}"
                ) from exc
            _clients[key] = client
    return client


def close_clients():
    """Close and forget every cached client of this process."""
    with _clients_lock:
        for key, client in list(_clients.items()):
            if key[0] == os.getpid():
                client.close()
            del _clients[key]


def is_local_host(environment):
    """Return whether the environment's Docker engine runs on this machine."""
    host = environment.docker_host
    return host.startswith(("unix://", "npipe://")) or any(
        host.startswith(f"tcp://{h}") for h in ("127.0.0.1", "localhost", "[::1]")
    )


def engine_facts(client, environment):
    """Return ``(version, info)`` of the engine after a ping.

    Raises EngineError naming the host when it does not answer.
    """
    with engine_errors(f"{describe_host(environment)} is unreachable"):
        client.ping()
        return client.version(), client.info()

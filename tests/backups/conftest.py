"""Fixtures of the backup tests: real restic repositories in the three kinds
of place, on 127.0.0.1 only.

- a folder (the local tier) under the test's tmp_path;
- a real OpenSSH server (Debian's sshd) on a free port with a key made for
  the session (the remote tier, restic's sftp backend);
- moto's S3 server on a free port (the cloud tier, restic's s3 backend).

The environment the backups run in is a copy of the real configuration's
demo with its own variables pointing at these servers.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stacks.config import import_configs
from stacks.models import Environment
from tests.conftest import RUN_ID, TEST_LABEL

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = f"repository-password-{RUN_ID}"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port, process, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """Run Debian's sshd on 127.0.0.1 with a key of its own; yield its facts."""
    folder = tmp_path_factory.mktemp("sshd")
    host_key = folder / "host_ed25519"
    client_key = folder / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
        )
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = free_port()
    known_hosts = folder / "known_hosts"
    public = (folder / "host_ed25519.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    store = folder / "store"
    store.mkdir()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPidFile {folder}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "sshd.log", "wb"),  # noqa: SIM115
    )
    try:
        wait_port(port, process, "sshd")
        yield {
            "port": port,
            "identity": client_key,
            "known_hosts": known_hosts,
            "store": store,
            "log": folder / "sshd.log",
        }
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server():
    """Run moto's S3 server on 127.0.0.1; yield its endpoint URL."""
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def backup_variables(tmp_path, sshd, s3_server):
    """Return the variables that point the tiers at this test's servers."""
    return {
        "BACKUP_REPOSITORY_PASSWORD": PASSWORD,
        "BACKUP_LOCAL_PATH": str(tmp_path / "local"),
        "BACKUP_SFTP_USER": "root",
        "BACKUP_SFTP_HOST": "127.0.0.1",
        "BACKUP_SFTP_PATH": str(sshd["store"] / RUN_ID / tmp_path.name),
        "BACKUP_SFTP_PORT": str(sshd["port"]),
        "BACKUP_SFTP_IDENTITY": str(sshd["identity"]),
        "BACKUP_SFTP_KNOWN_HOSTS": str(sshd["known_hosts"]),
        "BACKUP_S3_ENDPOINT": s3_server,
        "BACKUP_S3_BUCKET": f"backups-{RUN_ID}",
        "BACKUP_S3_ACCESS_KEY": "test-access-key",
        "BACKUP_S3_SECRET_KEY": "test-secret-key",
        "BACKUP_TAPE_DEVICE": str(tmp_path / "tape"),
    }


@pytest.fixture
def operator(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(f"op{RUN_ID}")


@pytest.fixture
def running(backup_environment, operator):
    """Return a function starting services of the backup environment."""
    from portal.operations import run_inline
    from stacks.models import Service
    from stacks.operations import start_stack

    def start(*names):
        for name in names:
            service = Service.objects.get(name=name)
            operation = run_inline(
                start_stack(
                    backup_environment,
                    service.stack,
                    service=service,
                    user=operator,
                    enqueue=False,
                )
            )
            assert operation.status == "succeeded", operation.error
        return backup_environment

    return start


@pytest.fixture
def configs(db, settings):
    """Import the real configuration; label what the portal creates."""
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    import_configs()


@pytest.fixture
def backup_environment(configs, backup_variables, docker_client):
    """Return an environment, a copy of demo with its own subnet pool and
    port offset, whose tiers point at this test's folder and servers."""
    from backups.models import BackupPolicy
    from stacks.config import published_ports
    from stacks.models import Service, ServiceOverride
    from tests.stacks.test_lifecycle import free_offset, free_pool

    demo = Environment.objects.get(name="demo")
    base_ports = {
        p.published - demo.port_offset
        for service in Service.objects.all()
        for p in published_ports(service, demo)
        if p.published is not None
    }
    env = Environment.objects.create(
        name=f"b{RUN_ID}{os.getpid() % 1000}",
        docker_host=demo.docker_host,
        subnet_pool=free_pool(docker_client),
        port_offset=free_offset(base_ports),
        bind_address=demo.bind_address,
        gpu_enabled=False,
        settings={
            **demo.settings,
            "variables": {**demo.settings.get("variables", {}), **backup_variables},
        },
    )
    for override in demo.service_overrides.all():
        ServiceOverride.objects.create(
            environment=env, service=override.service, values=override.values
        )
    demo_policy = BackupPolicy.objects.get(environment=demo)
    BackupPolicy.objects.create(
        environment=env,
        schedule=demo_policy.schedule,
        backup_types=demo_policy.backup_types,
        tiers=demo_policy.tiers,
    )
    return env


@pytest.fixture
def scratch_network(docker_client, docker_labels):
    """Return a labelled network for the throw-away containers of a restore."""
    import uuid

    return docker_client.networks.create(
        f"sp-restore-{uuid.uuid4().hex[:10]}", driver="bridge", labels=docker_labels
    )


@pytest.fixture
def start_scratch(docker_client):
    """Return a function starting a created container on ``scratch_network``
    and returning its address there once Docker reports it healthy."""
    from tests.stacks.live import wait_for

    def start(container, network, what="the restored service"):
        docker_client.api.start(container.id)

        def healthy():
            container.reload()
            state = container.attrs["State"]
            if state["Status"] in ("exited", "dead"):
                raise AssertionError(
                    f"{what} exited: {container.logs(tail=20).decode(errors='replace')}"
                )
            return state.get("Health", {}).get("Status") == "healthy"

        wait_for(healthy, timeout=90, what=f"{what} to be healthy")
        return container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]

    return start

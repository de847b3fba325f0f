"""The portal on a real PostgreSQL server, configured only through DATABASE_URL.

The server is the locally built ``stackportal/postgres`` stand-in on a
network the test creates, reached from the host by its address on it, as in
tests/images/test_standins.py. Every command runs in its own process with the
production settings module, so nothing of the test settings leaks in.
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(120)]


def _build_images():
    spec = importlib.util.spec_from_file_location(
        "build_images", ROOT / "scripts" / "build_images.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def postgres(docker_client, docker_labels):
    """Run the PostgreSQL stand-in; return its connection keywords."""
    image = _build_images().build_all(
        docker_client, names=["postgres"], log=lambda line: None
    )["postgres"]
    network = docker_client.networks.create(
        f"sp-test-{uuid.uuid4().hex[:10]}", driver="bridge", labels=docker_labels
    )
    container = docker_client.containers.run(
        image,
        detach=True,
        network=network.name,
        labels=docker_labels,
        environment={
            "POSTGRES_USER": "user",
            "POSTGRES_PASSWORD": "pass",
            "POSTGRES_DB": "portal",
        },
    )
    container.reload()
    host = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    params = {
        "host": host,
        "port": 5432,
        "user": "user",
        "password": "pass",
        "dbname": "portal",
    }
    # The entrypoint's setup server listens on a socket only: a TCP
    # connection succeeds once the real server is up.
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(connect_timeout=2, **params).close()
            break
        except psycopg.OperationalError:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs(tail=30).decode(errors="replace")
                pytest.fail(f"PostgreSQL did not come up:\n{logs}")
            time.sleep(0.2)
    yield params
    container.remove(v=True, force=True)
    network.remove()


def manage(database_url, *args):
    """Run ``manage.py`` on ``database_url``; return stdout and stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} exited {result.returncode}:\n"
        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def test_postgres_migrate_import_export(postgres, tmp_path):
    url = "postgres://user:pass@{host}:5432/portal".format(**postgres)
    source = yaml.safe_load((ROOT / "configs" / "stacks.yaml").read_text())

    out = manage(url, "migrate", "--noinput")
    assert "Applying stacks.0001_initial... OK" in out
    assert "Applying portal.0001_initial... OK" in out

    out = manage(url, "import_configs")
    created = re.search(r"(\d+) created, 0 updated, 0 unchanged, ", out)
    assert created, out[-2000:]
    total = int(created.group(1))
    assert total > len(source["services"])
    out = manage(url, "import_configs")
    assert f"0 created, 0 updated, {total} unchanged, " in out

    exported = tmp_path / "stacks.yaml"
    out = manage(url, "export_configs", "--output", str(exported))
    assert f"wrote {exported}" in out
    data = yaml.safe_load(exported.read_text())
    assert list(data["stacks"]) == list(source["stacks"])
    assert sorted(data["services"]) == sorted(source["services"])
    assert list(data["environments"]) == list(source["environments"])

    # The rows are in PostgreSQL itself.
    with psycopg.connect(**postgres) as conn:
        names = [
            name for (name,) in conn.execute("select name from stacks_environment")
        ]
    assert sorted(names) == sorted(source["environments"])

"""Disaster recovery without the portal: the restic-only commands of
docs/OPERATIONS.md ("Disaster recovery without the portal"), extracted
from the file and run as written in a bash with a bare environment (no
Django settings, no worker, no server), after the portal's records of the
backup are deleted, restore a PostgreSQL backup with every row."""

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from backups.models import BackupRecord
from backups.operations import backup_service
from portal.operations import run_inline
from stacks import engine
from stacks.models import Service
from tests.backups.conftest import PASSWORD
from tests.backups.test_postgres import SEED, psql
from tests.backups.test_runs import only_local

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```bash (dr-[a-z]+)\n(.*?)```", re.S)


def doc_blocks():
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    return dict(BLOCK.findall(text))


def test_the_documented_restic_commands_restore_postgres_without_the_portal(
    running, operator, docker_client, backup_variables
):
    blocks = doc_blocks()
    assert set(blocks) == {"dr-settings", "dr-restore"}
    env = running("postgres")
    only_local(env)
    service = Service.objects.get(name="postgres")
    live = engine.service_states(docker_client, env.project_name(service.stack))
    container = live["postgres"]
    psql(docker_client, container.id, SEED)
    operation = run_inline(backup_service(env, service, user=operator, enqueue=False))
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    repository = record.repository
    # The portal's database is lost.
    BackupRecord.objects.all().delete()

    # The settings block as an operator fills it in for this environment.
    settings = blocks["dr-settings"]
    restored = f"pg-restored-{uuid.uuid4().hex[:8]}"
    values = {
        "RESTIC_REPOSITORY": repository,
        "ENVIRONMENT": env.name,
        "SERVICE": "postgres",
        "IMAGE": docker_client.api.inspect_container(container.id)["Config"]["Image"],
        "RESTORED": restored,
    }
    filled = []
    for line in settings.splitlines():
        name = re.match(r"(?:export )?([A-Z_]+)=", line)
        if name and name.group(1) in values:
            prefix = "export " if line.startswith("export ") else ""
            filled.append(f"{prefix}{name.group(1)}={values[name.group(1)]}")
        else:
            filled.append(line)
    assert filled != settings.splitlines()
    script = "set -euo pipefail\n" + "\n".join(filled) + "\n" + blocks["dr-restore"]
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            input=f"{PASSWORD}\n",
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"record={record.pk}" in done.stdout
        lines = done.stdout.strip().splitlines()
        assert lines[-2:] == ["items 2500", "notes 40"]
        assert (
            f"restoring /multimodal.full.dump into database multimodal of "
            f"container {restored}" in done.stdout
        )
    finally:
        subprocess.run(
            ["docker", "rm", "-f", "-v", restored], capture_output=True, check=False
        )

"""The record page's restore commands, run as an operator would paste them:
bash, plain restic and docker, no portal code, against a real PostgreSQL
backup in every tier."""

import html
import re
import subprocess

import pytest
from django.test import Client

from backups.models import BackupRecord
from backups.operations import backup_service
from portal.operations import run_inline
from stacks import engine
from stacks.models import Service
from tests.backups.conftest import PASSWORD
from tests.backups.test_postgres import SEED, psql

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]

COMMAND = re.compile(r'<pre class="command">(.*?)</pre>', re.S)


@pytest.fixture
def backed_up(running, operator, docker_client):
    """Back up a seeded postgres into every tier; return (records by tier,
    the container)."""
    env = running("postgres")
    service = Service.objects.get(name="postgres")
    container = engine.service_states(docker_client, env.project_name(service.stack))[
        "postgres"
    ].id
    psql(docker_client, container, SEED)
    operation = run_inline(backup_service(env, service, user=operator, enqueue=False))
    assert operation.status == "succeeded", operation.error
    records = {r.tier.name: r for r in BackupRecord.objects.filter(operation=operation)}
    return records, container


def commands(client, record):
    page = client.get(record.get_absolute_url()).content.decode()
    return [html.unescape(text) for text in COMMAND.findall(page)]


def run_steps(steps, answers, cwd):
    """Run the steps in one bash, answering its prompts from ``answers``."""
    script = "set -euo pipefail\n" + "\n".join(steps) + "\n"
    return subprocess.run(
        ["bash", "-c", script],
        input="".join(f"{answer}\n" for answer in answers),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_restore_commands_of_every_repository_tier_restore_the_database(
    backed_up, operator, backup_variables, docker_client, tmp_path
):
    records, container = backed_up
    client = Client()
    client.force_login(operator)
    answers = {
        "local": [PASSWORD],
        "remote": [PASSWORD],
        "cloud": [
            PASSWORD,
            backup_variables["BACKUP_S3_ACCESS_KEY"],
            backup_variables["BACKUP_S3_SECRET_KEY"],
        ],
    }
    for tier, answer in answers.items():
        record = records[tier]
        steps = commands(client, record)
        assert steps[0].startswith("export RESTIC_REPOSITORY=")
        assert not any(PASSWORD in step for step in steps)
        assert not any(backup_variables["BACKUP_S3_SECRET_KEY"] in s for s in steps)
        done = run_steps(steps, answer, tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        # The files: the dump, in a folder named after the record.
        dump = tmp_path / f"restore-{record.pk}" / "multimodal.full.dump"
        assert dump.stat().st_size > 10_000
        # The database: created and loaded in the running service.
        database = f"restored_{record.pk}"
        assert psql(
            docker_client, container, "SELECT count(*) FROM items", database
        ) == ("2500")
        assert psql(
            docker_client, container, "SELECT count(*) FROM notes", database
        ) == ("40")


def test_restore_commands_of_the_tape_tier_check_every_file(
    backed_up, operator, tmp_path
):
    records, _container = backed_up
    client = Client()
    client.force_login(operator)
    record = records["tape"]
    done = run_steps(commands(client, record), [], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PORTAL-MANIFEST.json" in done.stdout
    assert "multimodal.full.dump: OK" in done.stdout

"""Fixtures of the backup page, status, metrics and command tests.

The configuration is the real one (``configs``); environments made here are
copies of its demo with their own name, policy and variables, so nothing
touches the real demo's containers or repositories. Each factory creates
exactly what it names.

Imported with ``from tests.backups.records import *``.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from backups.models import BackupPolicy, BackupRecord, StorageTier
from portal.choices import Role
from portal.models import RoleAssignment
from stacks.models import Environment, Service
from tests.conftest import RUN_ID

__all__ = ["make_backup_environment", "make_record", "make_user", "SNAPSHOT"]

SNAPSHOT = "5e1f0c2a9b41de77" + "0" * 48


@pytest.fixture
def make_backup_environment(configs, tmp_path):
    """Return a function making an environment with a backup policy.

    Its local tier is a folder under the test's tmp_path; its Docker
    project names carry the run id, so no container of another run is ever
    found.
    """

    def make(name="bk", *, tiers=("local",), schedule="30 2 * * *", **fields):
        demo = Environment.objects.get(name="demo")
        environment = Environment.objects.create(
            name=f"{name}-{RUN_ID}",
            docker_host=demo.docker_host,
            gpu_enabled=False,
            settings={
                "variables": {
                    "BACKUP_REPOSITORY_PASSWORD": f"pw-{RUN_ID}",
                    "BACKUP_LOCAL_PATH": str(tmp_path / "local"),
                    "BACKUP_TAPE_DEVICE": str(tmp_path / "tape"),
                }
            },
            **fields,
        )
        BackupPolicy.objects.create(
            environment=environment,
            schedule=schedule,
            backup_types=["incremental"],
            tiers=list(tiers),
        )
        return environment

    return make


@pytest.fixture
def make_record(db):
    """Return a function making one backup record, ``age`` old."""

    def make(
        environment,
        service="postgres",
        strategy="full",
        tier="local",
        *,
        age=timedelta(hours=1),
        status="succeeded",
        **fields,
    ):
        created = timezone.now() - age
        if status == "succeeded":
            fields.setdefault("snapshot_id", SNAPSHOT)
            fields.setdefault("bytes_total", 3 * 2**20)
            fields.setdefault("bytes_added", 200 * 2**10)
            fields.setdefault("files", 1)
            fields.setdefault("duration_s", 2.5)
        return BackupRecord.objects.create(
            environment=environment,
            service=Service.objects.filter(name=service).first(),
            service_name=service,
            strategy=strategy,
            tier=StorageTier.objects.get(name=tier),
            status=status,
            created=created,
            finished=None if status == "running" else created + timedelta(seconds=3),
            **fields,
        )

    return make


@pytest.fixture
def make_user(db):
    """Return a function making a user with ``role`` on ``environment``."""

    def make(username, role=None, environment=None, **fields):
        user = get_user_model().objects.create_user(
            username=username, password="pw-" + username, **fields
        )
        if role is not None:
            RoleAssignment.objects.create(
                user=user, role=Role(role), environment=environment
            )
        return user

    return make

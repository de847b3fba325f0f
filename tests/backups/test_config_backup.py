"""Configuration backups: the environment's rendered compose files and the
configuration folder in one tar, secrets redacted, restored with plain
restic; and the redaction of YAML and env text on its own."""

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from backups.models import BackupRecord
from backups.operations import backup_config
from backups.strategies.config import redact_env_text, redact_yaml_text
from backups.tarstream import ChunkReader
from backups.tiers import repository
from portal.operations import run_inline
from stacks.models import Stack
from stacks.secrets import environ_for

ROOT = Path(__file__).resolve().parents[2]

YAML = """\
# a comment that stays
services:
  app:
    environment:
      DB_PASSWORD: "${DB_PASSWORD}"   # a reference stays
      API_KEY: literal-api-key-value  # a value goes
      FALLBACK_SECRET: "${FALLBACK_SECRET:-default-secret}"
      PLAIN: visible
      - "TOKEN=abc-token-value"
    private_key: |
      -----BEGIN KEY-----
      line-of-key
    next: kept
"""


def test_yaml_redaction_keeps_references_comments_and_other_values():
    text, count = redact_yaml_text(YAML)
    assert count == 4
    assert '      DB_PASSWORD: "${DB_PASSWORD}"   # a reference stays' in text
    assert '      API_KEY: "********"  # a value goes' in text
    assert '      FALLBACK_SECRET: "${FALLBACK_SECRET:-********}"' in text
    assert "      PLAIN: visible" in text
    assert '      - "TOKEN=********"' in text
    assert "    private_key: |\n      ********\n      ********\n    next: kept" in text
    for value in ("literal-api-key-value", "default-secret", "abc-token", "line-of"):
        assert value not in text
    assert text.startswith("# a comment that stays\n")


def test_env_redaction_hides_secret_values_only():
    text, count = redact_env_text(
        "# comment\nexport DB_PASSWORD='hunter22'\nLOG_LEVEL=debug\n"
        "S3_SECRET_KEY=${OTHER}\nEMPTY_TOKEN=\n"
    )
    assert count == 1
    assert text == (
        "# comment\nexport DB_PASSWORD='********'\nLOG_LEVEL=debug\n"
        "S3_SECRET_KEY=${OTHER}\nEMPTY_TOKEN=\n"
    )


@pytest.fixture
def config_dir(tmp_path, settings, backup_environment):
    """A copy of configs/ with an env file of the environment's own."""
    folder = tmp_path / "configs"
    shutil.copytree(
        ROOT / "configs",
        folder,
        ignore=shutil.ignore_patterns("*.env", "__pycache__", "restic"),
    )
    (folder / "env" / f"{backup_environment.name}.env").write_text(
        "# this environment's own values\nSMTP_PASSWORD=smtp-secret-value-1\n"
        "LOG_LEVEL=debug\n"
    )
    settings.PORTAL_CONFIG_DIR = folder
    return folder


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_configuration_backup_is_redacted_and_restores_with_plain_restic(
    backup_environment, config_dir, operator
):
    env = backup_environment
    operation = run_inline(backup_config(env, user=operator, enqueue=False))
    assert operation.status == "succeeded", operation.error
    assert operation.kind == "backup.config" and operation.stack is None
    records = {r.tier.name: r for r in BackupRecord.objects.filter(operation=operation)}
    assert set(records) == {"local", "remote", "cloud", "tape"}
    assert {r.status for r in records.values()} == {"succeeded"}
    local = records["local"]
    assert (local.service, local.service_name, local.strategy) == (
        None,
        "config",
        "config",
    )
    assert "service=config" in local.tags and f"env={env.name}" in local.tags
    assert not any(tag.startswith("stack=") for tag in local.tags)

    with repository(local.tier, env).dump(local.snapshot_id, "/config.tar") as data:
        blob = b"".join(data)
    with tarfile.open(fileobj=ChunkReader([blob]), mode="r|") as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}

    stacks = list(
        Stack.objects.order_by("order", "name").values_list("name", flat=True)
    )
    assert [n for n in files if n.startswith("compose/")] == [
        f"compose/compose.{name}.yml" for name in stacks
    ]
    for name in (
        "configs/stacks.yaml",
        "configs/backup-strategies.yaml",
        "configs/retention-policies.yaml",
        f"configs/env/{env.name}.env",
        "configs/env/production.env.example",
        "configs/images/httpstub/standin.py",
    ):
        assert name in files, name
    # Host binaries copied in for image builds are no configuration.
    assert (config_dir / "images" / "busybox" / "busybox").is_file()
    assert "configs/images/busybox/busybox" not in files

    # No value of a secret variable anywhere; references stay.
    environ = environ_for(env)
    secrets = {
        name: environ[name]
        for name in (
            "POSTGRES_PASSWORD",
            "MINIO_ROOT_PASSWORD",
            "MINIO_ROOT_USER",
            "LITELLM_MASTER_KEY",
            "BACKUP_REPOSITORY_PASSWORD",
            "BACKUP_S3_SECRET_KEY",
            "BACKUP_S3_ACCESS_KEY",
            "SMTP_PASSWORD",
        )
    }
    assert secrets["SMTP_PASSWORD"] == "smtp-secret-value-1"
    for name, value in secrets.items():
        assert value.encode() not in blob, name
    core = files["compose/compose.core.yml"].decode()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}" in core
    assert "MINIO_ROOT_USER: ${MINIO_ROOT_USER}" in core
    env_file = files[f"configs/env/{env.name}.env"].decode()
    assert "SMTP_PASSWORD=********" in env_file and "LOG_LEVEL=debug" in env_file
    stacks_yaml = files["configs/stacks.yaml"].decode()
    assert 'POSTGRES_PASSWORD: "********"' in stacks_yaml
    assert "# LLM Multimodal Stack: services" in stacks_yaml  # comments survive
    # Redacted or not, every YAML file still parses.
    for name, body in files.items():
        if name.endswith((".yaml", ".yml")):
            yaml.safe_load(io.BytesIO(body))

    manifest = local.manifest
    assert manifest["files"] == len(files)
    assert manifest["bytes"] == sum(len(body) for body in files.values())
    assert manifest["checksums"] == {
        name: hashlib.sha256(body).hexdigest() for name, body in files.items()
    }
    assert manifest["stacks"] == stacks
    assert manifest["redacted"] > 0
    # The tape archive holds the same files, described.
    tape = Path(records["tape"].repository)
    with tarfile.open(tape) as archive:
        names = archive.getnames()
    assert "PORTAL-MANIFEST.json" in names and "config.tar" in names

"""Repositories of each tier with real restic: a folder, sftp to a real
sshd, S3 on moto's server; and the errors an operator must understand."""

import hashlib
import os
import subprocess
import time

import pytest

from backups.models import StorageTier
from backups.restic import ResticError
from backups.tiers import BackupError, repository, snapshot_host
from tests.conftest import RUN_ID

pytestmark = pytest.mark.django_db


def blob(size, seed=b"x"):
    """Return ``size`` bytes of incompressible data."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out.extend(block * 64)
    return bytes(out[:size])


def chunks(data, size=1 << 16):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("tier_name", ["local", "remote", "cloud"])
def test_stream_in_and_out_of_each_kind_of_repository(backup_environment, tier_name):
    """Created on first use (compressed format), a stream backed up with
    tags, found by tag, and dumped back byte for byte."""
    tier = StorageTier.objects.get(name=tier_name)
    repo = repository(tier, backup_environment)
    assert repo.ensure() is True
    assert repo.ensure() is False
    assert repo.run("cat", "config", parse_json=True)["version"] == 2
    data = blob(3 * 1024 * 1024)
    summary = repo.backup_stream(
        chunks(data),
        filename="postgres.dump",
        tags=[f"env={backup_environment.name}", "service=postgres", "record=1"],
        host=snapshot_host(backup_environment),
    )
    assert summary["total_bytes_processed"] == len(data)
    (snapshot,) = repo.snapshots(f"env={backup_environment.name}", "record=1")
    assert snapshot["id"].startswith(summary["snapshot_id"][:8])
    with repo.dump(summary["snapshot_id"], "/postgres.dump") as stream:
        assert b"".join(stream) == data


def test_repository_urls_name_the_environment(backup_environment, s3_server, sshd):
    env = backup_environment.name
    local = repository(StorageTier.objects.get(name="local"), backup_environment)
    assert local.url.endswith(f"/local/{env}")
    remote = repository(StorageTier.objects.get(name="remote"), backup_environment)
    assert remote.url.startswith("sftp:root@127.0.0.1:") and remote.url.endswith(env)
    assert f"-p {sshd['port']}" in remote.options["sftp.command"]
    cloud = repository(StorageTier.objects.get(name="cloud"), backup_environment)
    assert cloud.url == f"s3:{s3_server}/backups-{RUN_ID}/{env}"
    # The password is in the process environment of restic, never its argv.
    assert all("repository-password" not in arg for arg in cloud.argv("snapshots"))


def test_wrong_password_is_a_clear_error(backup_environment):
    tier = StorageTier.objects.get(name="local")
    repository(tier, backup_environment).ensure()
    variables = backup_environment.settings["variables"]
    variables["BACKUP_REPOSITORY_PASSWORD"] = "not-the-password"
    backup_environment.save()
    with pytest.raises(ResticError) as excinfo:
        repository(tier, backup_environment).snapshots()
    assert excinfo.value.kind == "password"
    assert str(excinfo.value).startswith(
        f"local tier of {backup_environment.name}: wrong repository password"
    )
    assert "not-the-password" not in str(excinfo.value)


def test_missing_password_variable_names_it(backup_environment):
    variables = backup_environment.settings["variables"]
    del variables["BACKUP_REPOSITORY_PASSWORD"]
    backup_environment.save()
    with pytest.raises(BackupError) as excinfo:
        repository(StorageTier.objects.get(name="local"), backup_environment)
    assert str(excinfo.value).startswith(
        f"The password of the local tier in {backup_environment.name}: variable "
        "BACKUP_REPOSITORY_PASSWORD is not set"
    )


def test_unreachable_sftp_server_names_the_tier(backup_environment, backup_variables):
    variables = backup_environment.settings["variables"]
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        variables["BACKUP_SFTP_PORT"] = str(sock.getsockname()[1])
    backup_environment.save()
    repo = repository(StorageTier.objects.get(name="remote"), backup_environment)
    with pytest.raises(ResticError) as excinfo:
        repo.ensure()
    assert excinfo.value.kind == "unreachable"
    assert str(excinfo.value).startswith(
        f"remote tier of {backup_environment.name}: unreachable: "
    )


def test_unreachable_s3_server_names_the_tier(backup_environment):
    variables = backup_environment.settings["variables"]
    variables["BACKUP_S3_ENDPOINT"] = "http://127.0.0.1:9"
    backup_environment.save()
    repo = repository(StorageTier.objects.get(name="cloud"), backup_environment)
    with pytest.raises(ResticError) as excinfo:
        repo.ensure()
    assert excinfo.value.kind == "unreachable"
    assert f"cloud tier of {backup_environment.name}: unreachable" in str(excinfo.value)


def test_repository_locked_by_another_restic_is_a_clear_error(backup_environment):
    """A restic still running (here: an exclusive lock held by a prune that
    waits on nothing) makes our exclusive command fail, naming the lock."""
    repo = repository(StorageTier.objects.get(name="local"), backup_environment)
    repo.ensure()
    holder = subprocess.Popen(
        repo.argv("backup", "--stdin", "--stdin-filename", "slow", "--host", "x"),
        env=repo.environ(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        holder.stdin.write(b"x" * 1024)
        holder.stdin.flush()
        deadline = time.monotonic() + 20
        while not repo.run("list", "locks", "--no-lock").strip():
            assert time.monotonic() < deadline, "the backup took no lock"
            time.sleep(0.1)
        with pytest.raises(ResticError) as excinfo:
            repo.forget(keep={"last": 1}, prune=True)
        assert excinfo.value.kind == "locked"
        assert str(excinfo.value).startswith(
            f"local tier of {backup_environment.name}: locked by another restic ("
        )
        assert f"PID {holder.pid}" in str(excinfo.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_stale_lock_of_a_killed_restic_is_removed_by_unlock(backup_environment):
    repo = repository(StorageTier.objects.get(name="local"), backup_environment)
    repo.ensure()
    holder = subprocess.Popen(
        repo.argv("backup", "--stdin", "--stdin-filename", "slow", "--host", "x"),
        env=repo.environ(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    holder.stdin.write(b"x")
    holder.stdin.flush()
    deadline = time.monotonic() + 20
    while not repo.run("list", "locks", "--no-lock").strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(holder.pid, 9)
    holder.wait()
    repo.unlock()
    assert repo.run("list", "locks", "--no-lock").strip() == ""
    repo.forget(keep={"last": 1}, prune=True)

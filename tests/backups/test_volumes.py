"""Volume backups end to end: restic in a helper next to the service's named
volumes, full, incremental and differential; restored with plain
``restic restore`` and loaded into a fresh container of the same kind.

And what can go wrong next to the data: a helper killed with its lock
held, a repository whose disk is full, a first tier that is no folder."""

import io
import subprocess
import tarfile
import threading
import time

import pytest

from backups.models import BackupPolicy, BackupRecord, StorageTier
from backups.operations import backup_service
from backups.restic import ResticError
from backups.tiers import local_path, repository, snapshot_host
from backups.volumes import HOST_PREFIX, remove_stale_helper_locks, run_restic
from portal.operations import run_inline
from stacks import engine
from stacks.engine.specs import volume_docker_name
from stacks.models import Service
from stacks.operations import start_stack
from tests.stacks.live import wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

BUSYBOX = "stackportal/busybox:local"
# Random model files: count, size in KiB; names passed as arguments.
FILL_SCRIPT = (
    'dir="$1"; count="$2"; kib="$3"; mkdir -p "$dir/models/blobs" "$dir/models/refs"; '
    'i=0; while [ "$i" -lt "$count" ]; do '
    'head -c "$((kib * 1024))" /dev/urandom > "$dir/models/blobs/blob-$i.bin"; '
    "i=$((i + 1)); done; "
    'echo main > "$dir/models/refs/main"; '
    'echo \'{"model": "demo"}\' > "$dir/config.json"; '
    'ln -sf models/refs/main "$dir/current"'
)


def run_busybox(docker_client, docker_labels, volume, script, *args, timeout=300):
    container = docker_client.containers.run(
        BUSYBOX,
        ["sh", "-c", script, "sh", *args],
        volumes={volume: {"bind": "/data", "mode": "rw"}},
        labels=docker_labels,
        detach=True,
    )
    try:
        status = container.wait(timeout=timeout)
        assert status["StatusCode"] == 0, container.logs().decode(errors="replace")
        return container.logs()
    finally:
        container.remove(force=True)


def tree_digests(docker_client, docker_labels, volume):
    """Return {path: sha256} of the regular files of a volume."""
    out = run_busybox(
        docker_client,
        docker_labels,
        volume,
        "cd /data && find . -type f -exec sha256sum {} + | sort -k 2",
    )
    digests = {}
    for line in out.decode().splitlines():
        digest, _, path = line.partition("  ")
        digests[path.removeprefix("./")] = digest
    return digests


@pytest.fixture
def vllm(backup_environment, operator, docker_client, docker_labels):
    """The demo's vLLM stand-in (and the core stack it needs) with a models
    volume of random files."""
    env = backup_environment
    service = Service.objects.get(name="vllm")
    started = run_inline(
        start_stack(
            env,
            service.stack,
            service=service,
            user=operator,
            with_dependencies=True,
            enqueue=False,
        )
    )
    assert started.status == "succeeded", started.error
    volume = volume_docker_name(env.project_name(service.stack), "vllm_cache")
    run_busybox(docker_client, docker_labels, volume, FILL_SCRIPT, "/data", "24", "512")
    return env, volume


def run_backup(environment, operator, backup_type=None):
    return run_inline(
        backup_service(
            environment,
            Service.objects.get(name="vllm"),
            user=operator,
            backup_type=backup_type,
            enqueue=False,
        )
    )


def local_record(operation):
    assert operation.status == "succeeded", operation.error
    return BackupRecord.objects.get(operation=operation, tier__name="local")


def log_text(operation):
    return "\n".join(line.text for line in operation.lines.order_by("seq"))


def test_volume_backups_full_incremental_differential_and_restore(
    vllm, operator, docker_client, docker_labels, tmp_path
):
    env, volume = vllm
    original = tree_digests(docker_client, docker_labels, volume)
    assert len(original) == 26

    first = local_record(run_backup(env, operator))
    assert first.strategy == "volumes"
    facts = first.manifest["volumes"]["vllm_cache"]
    assert (facts["volume"], facts["files"]) == (volume, 26)
    assert facts["bytes"] == 24 * 512 * 1024 + len("main\n") + len(
        '{"model": "demo"}\n'
    )
    assert first.manifest["paths"] == ["/volumes/vllm_cache"]
    assert len(facts["sample"]) == 3
    for path, digest in facts["sample"].items():
        assert original[path] == digest
    assert first.bytes_added > 24 * 512 * 1024 * 0.9
    # Copied into the colder tiers like any snapshot.
    copies = BackupRecord.objects.filter(copied_from=first)
    assert {c.tier.name for c in copies if c.status == "succeeded"} == {
        "remote",
        "cloud",
        "tape",
    }

    unchanged = run_backup(env, operator)
    second = local_record(unchanged)
    assert second.bytes_added < first.bytes_added / 100
    assert "0 new, 0 changed, 26 unchanged files" in log_text(unchanged)

    run_busybox(
        docker_client,
        docker_labels,
        volume,
        "echo changed >> /data/config.json; head -c 4096 /dev/urandom > /data/new.bin",
    )
    third = run_backup(env, operator)
    local_record(third)
    assert "1 new, 1 changed, 25 unchanged files" in log_text(third)

    full = run_backup(env, operator, "full")
    full_record = local_record(full)
    assert "27 new, 0 changed, 0 unchanged files" in log_text(full)
    assert "type=full" in full_record.tags

    run_busybox(docker_client, docker_labels, volume, "echo again >> /data/config.json")
    differential = run_backup(env, operator, "differential")
    diff_record = local_record(differential)
    assert f"differential to full snapshot {full_record.snapshot_id[:8]}" in log_text(
        differential
    )
    assert "0 new, 1 changed, 26 unchanged files" in log_text(differential)

    # Plain restic restores the files; a fresh volume of a fresh container
    # of the same kind gets them, byte for byte.
    repo = repository(diff_record.tier, env)
    target = tmp_path / "restored"
    repo.run("restore", diff_record.snapshot_id, "--target", str(target))
    restored = target / "volumes" / "vllm_cache"
    assert (restored / "current").is_symlink()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(restored, arcname="volume")
    fresh_volume = docker_client.volumes.create(labels=docker_labels).name
    engine.write_volume(
        docker_client, fresh_volume, [buffer.getvalue()], environment=env
    )
    fresh = docker_client.containers.run(
        "stackportal/httpstub:local",
        environment={"STANDIN_KIND": "vllm", "STANDIN_PORT": "8000"},
        volumes={fresh_volume: {"bind": "/root/.cache", "mode": "rw"}},
        labels=docker_labels,
        user="root",
        detach=True,
    )
    listing = engine.exec_run(
        docker_client,
        fresh.id,
        [
            "sh",
            "-c",
            "cd /root/.cache && find . -type f -exec sha256sum {} + | sort -k 2",
        ],
    )
    assert listing.ok, listing.stderr_text()
    in_fresh = {
        path.removeprefix("./"): digest
        for digest, _, path in (
            line.partition("  ") for line in listing.stdout.decode().splitlines()
        )
    }
    assert in_fresh == tree_digests(docker_client, docker_labels, volume)


def test_lock_of_a_killed_helper_is_removed_and_a_live_one_kept(
    vllm, operator, docker_client, docker_labels
):
    env, volume = vllm
    tier = StorageTier.objects.get(
        name=BackupPolicy.objects.get(environment=env).tiers[0]
    )
    repo = repository(tier, env)
    repo.ensure()
    folder = local_path(tier, env)
    outcome = {}

    def back_up():
        try:
            # Held back by its own upload limit: at work for many seconds.
            run_restic(
                docker_client,
                repo,
                ["backup", "--json", "--limit-upload", "256"]
                + ["--host", snapshot_host(env), "/volumes/models"],
                environment=env,
                repository_path=folder,
                mounts=[engine.MountSpec("volume", "/volumes/models", volume, True)],
                owner="lock-test",
            )
        except ResticError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=back_up)
    worker.start()
    wait_for(
        lambda: any((folder / "locks").iterdir()),
        timeout=60,
        what="the helper's restic to take its lock",
    )
    (helper,) = engine.list_helpers(docker_client, purpose="restic.backup")
    name = helper["Names"][0].lstrip("/")
    assert name.startswith(HOST_PREFIX)

    # Running: its lock stays, however the cleanup is asked.
    assert remove_stale_helper_locks(docker_client, repo) == []
    assert docker_client.containers.get(name).status == "running"
    locks = repo.locks()
    assert [lock["hostname"] for _id, lock in locks] == [name]

    docker_client.containers.get(name).kill()
    worker.join(timeout=60)
    assert str(outcome["error"]) == (
        f"{repo.name}: the restic helper {name} was stopped (exit 137) before it "
        "finished; it wrote no snapshot"
    )
    # The stale lock blocks what needs the repository alone.
    with pytest.raises(ResticError) as locked:
        repo.check()
    assert locked.value.kind == "locked"
    assert name in str(locked.value)

    operation = run_backup(env, operator)
    local_record(operation)
    assert (
        f"{repo.name}: removed a stale lock of restic helper {name} (it no longer "
        "runs)" in log_text(operation)
    )
    assert repo.locks() == []
    assert "no errors were found" in repo.check().output


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs: a repository folder that fills up."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(mountpoint)], check=False).returncode == 0:
                break
            time.sleep(0.5)


def test_a_full_repository_disk_fails_with_the_tier_named(
    vllm, operator, docker_client, docker_labels, small_disk
):
    env, volume = vllm
    run_busybox(
        docker_client, docker_labels, volume, FILL_SCRIPT, "/data", "16", "4096"
    )
    settings = dict(env.settings)
    settings["variables"] = {
        **settings["variables"],
        "BACKUP_LOCAL_PATH": str(small_disk),
    }
    env.settings = settings
    env.save()
    operation = run_backup(env, operator)
    assert operation.status == "failed"
    assert operation.error == (
        f"local tier of {env.name}: the repository's storage is full: no space left "
        "on device"
    )
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.status == "failed" and not record.snapshot_id
    assert engine.list_helpers(docker_client, purpose="restic.backup") == []
    # What restic in the helper said, as the error the job turned into text.
    tier = StorageTier.objects.get(name="local")
    repo = repository(tier, env)
    with pytest.raises(ResticError) as full:
        run_restic(
            docker_client,
            repo,
            ["backup", "--json", "--host", snapshot_host(env), "/volumes/models"],
            environment=env,
            repository_path=local_path(tier, env),
            mounts=[engine.MountSpec("volume", "/volumes/models", volume, True)],
        )
    assert full.value.kind == "full"
    assert str(full.value).startswith(f"local tier of {env.name}: ")


def test_volume_backups_need_a_folder_as_first_tier(vllm, operator):
    env, _volume = vllm
    BackupPolicy.objects.filter(environment=env).update(tiers=["cloud", "local"])
    operation = run_backup(env, operator)
    assert operation.status == "failed"
    assert operation.error == (
        "Volume backups are written by restic in a helper on the Docker host into "
        "the first storage tier's folder, so that tier must be a filesystem or nfs "
        f"tier; cloud (the first tier of {env.name}) is s3. Put a filesystem tier "
        f"first in environments.{env.name}.storage_tiers "
        "(configs/backup-strategies.yaml)."
    )

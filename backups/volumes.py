"""restic next to the data: a helper container that reads volumes as files.

Volume data is not streamed as a tar: restic itself reads the files, in a
short-lived labelled helper container (image ``stackportal/restic``: the
Debian base and the host's restic; ``settings.restic_image`` of the
environment names another) on the Docker host, which mounts

- each volume read-only at ``/volumes/<volume key>`` (fixed paths, so
  restic finds the previous snapshot of the same volumes as its parent and
  skips the files that did not change);
- the first tier's repository folder read-write at ``/repository`` (so the
  tier must be a folder on the Docker host: a filesystem or nfs tier).

The repository password reaches restic on its standard input, through the
attached connection: it is in no ``docker inspect`` output (not in the
container's environment, command line or labels) and on no disk. restic's
JSON messages stream back as it works: progress, then the summary.

Locks: restic's ``unlock`` removes the locks of dead processes of its own
host only, and a helper is a host of its own (its host name is its
container name, ``portal-restic-<hex>``). Before each volume backup
:func:`remove_stale_helper_locks` removes the locks whose host is a portal
restic helper that is no longer running (killed, removed); a lock of a
running helper is kept, whatever its age.
"""

import json
import uuid

from stacks import engine

from .restic import ResticError, explain
from .tiers import BackupError

__all__ = [
    "DEFAULT_RESTIC_IMAGE",
    "HELPER_PURPOSE",
    "HOST_PREFIX",
    "REPOSITORY_MOUNT",
    "VOLUMES_MOUNT",
    "clear_stale_locks",
    "remove_stale_helper_locks",
    "restic_image",
    "run_restic",
]

DEFAULT_RESTIC_IMAGE = "stackportal/restic:local"
HELPER_PURPOSE = "restic.backup"
#: Host (and container) names of restic helpers start with this.
HOST_PREFIX = "portal-restic-"
REPOSITORY_MOUNT = "/repository"
VOLUMES_MOUNT = "/volumes"


def restic_image(environment):
    """Return the restic helper image of ``environment``."""
    return (environment.settings or {}).get("restic_image") or DEFAULT_RESTIC_IMAGE


def clear_stale_locks(environment, repository, log=None):
    """Remove the stale locks of ``repository`` before a run that needs it
    alone (check, prune): restic's own (dead processes on this host, or
    older than 30 minutes) and those of restic helpers that no longer run."""
    repository.unlock()
    client = engine.client_for(environment)
    with engine.engine_errors(engine.describe_host(environment)):
        hosts = remove_stale_helper_locks(client, repository)
    for host in hosts:
        if log is not None:
            log.warning(
                f"{repository.name}: removed a stale lock of restic helper {host} "
                "(it no longer runs)"
            )
    return hosts


def remove_stale_helper_locks(client, repository):
    """Remove the locks of restic helpers that no longer run; return their hosts.

    Locks of other hosts are left to restic's own rules (``unlock``).
    """
    ours = [
        (lock_id, lock)
        for lock_id, lock in repository.locks()
        if str(lock.get("hostname", "")).startswith(HOST_PREFIX)
    ]
    if not ours:
        return []
    # Listed after the locks: a helper that holds one of them was created
    # before it, so it is in this list while it runs.
    running = {
        name.lstrip("/")
        for helper in engine.list_helpers(client, purpose=HELPER_PURPOSE)
        if helper.get("State") == "running"
        for name in helper.get("Names") or []
    }
    removed = []
    for lock_id, lock in ours:
        if lock["hostname"] not in running:
            repository.remove_lock(lock_id)
            removed.append(lock["hostname"])
    return removed


def _lines(chunks):
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest


def run_restic(
    client,
    repository,
    args,
    *,
    environment,
    repository_path,
    mounts=(),
    owner="",
    on_message=None,
    check_cancel=None,
):
    """Run ``restic <args>`` on ``repository`` in a helper; return its JSON
    summary message (or None).

    ``repository_path`` is the repository's folder on the Docker host;
    ``mounts`` (:class:`stacks.engine.MountSpec`) are what restic reads.
    ``on_message(message)`` gets every other JSON message (progress).

    Raises ResticError naming the repository when restic fails (a full
    disk is kind ``full``), BackupError when it read only part of the files.
    """
    name = f"{HOST_PREFIX}{uuid.uuid4().hex[:12]}"
    argv = ["restic", "--repo", REPOSITORY_MOUNT, "--no-cache", *args]
    summary = None
    with engine.helper_stream(
        client,
        argv,
        environment=environment,
        purpose=HELPER_PURPOSE,
        owner=owner,
        image=restic_image(environment),
        mounts=[
            *mounts,
            engine.MountSpec("bind", REPOSITORY_MOUNT, str(repository_path)),
        ],
        name=name,
        hostname=name,
        stdin=[repository.password_input()],
    ) as run:
        for count, line in enumerate(_lines(run)):
            if count % 64 == 0 and check_cancel is not None:
                check_cancel()
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("message_type") == "summary":
                summary = message
            elif on_message is not None:
                on_message(message)
    result = run.result
    stderr = result.stderr_text(64 * 1024)
    if result.exit_code == 3:
        errors = [line for line in stderr.splitlines() if line.strip()]
        raise BackupError(
            f"{repository.name}: restic could not read every file, so its snapshot "
            f"is incomplete: {'; '.join(errors[-3:]) or 'no detail'}"
        )
    if result.exit_code in (137, 143, None) and not stderr:
        raise ResticError(
            f"{repository.name}: the restic helper {name} was stopped (exit "
            f"{result.exit_code}) before it finished; it wrote no snapshot"
        )
    if result.exit_code != 0:
        raise explain(repository.name, args[0], stderr)
    if summary is None and args[0] == "backup":
        raise ResticError(f"{repository.name}: restic backup reported no snapshot")
    return summary

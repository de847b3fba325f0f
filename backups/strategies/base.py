"""What every backup strategy shares: the service's container, tags, and the
stream from the container into restic."""

from dataclasses import dataclass, field

from stacks import engine

from ..tiers import BackupError

__all__ = ["BackupContext", "Strategy", "checked", "counted"]


@dataclass
class BackupContext:
    """What a strategy needs to read one service's data.

    ``log``, ``check_cancel`` and ``progress`` are the running operation's;
    ``container`` is the id of the service's running container; ``tier``
    the storage tier the data goes to first; ``owner`` what helper
    containers are labelled as started by (the operation's id).

    A restore (:mod:`backups.loaders`) measures a copy of the service with
    the same code: ``endpoint`` is where that copy's API answers (MinIO's,
    instead of the service's published port) and ``volumes`` the copy's
    volumes (``{key: Docker volume}``, instead of the service's own).
    """

    environment: object
    stack: object
    service: object
    strategy: object
    client: object
    container: str
    log: object
    check_cancel: object
    progress: object = None
    parameters: dict = field(default_factory=dict)
    tier: object = None
    owner: str = ""
    endpoint: str = ""
    volumes: dict | None = None


class Strategy:
    """One way of reading a service's data into a repository.

    Subclasses set ``name`` (the BACKUP_TYPE: ``full``, ``rdb``, ...) and
    implement :meth:`manifest` (what the data holds, taken before it is
    read; restore drills compare against it) and :meth:`backup` (stream it
    into the repository; return restic's summary).
    """

    name = ""
    #: The file name the data has in the snapshot.
    filename = ""

    def __init__(self, context):
        self.context = context

    def manifest(self):
        """Return what the data holds now: counts and sizes, JSON-able."""
        raise NotImplementedError

    def backup(self, repository, *, tags, host):
        """Stream the data into ``repository``; return restic's summary."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------

    def container_env(self):
        """Return the environment variables of the service's container."""
        context = self.context
        attrs = context.client.api.inspect_container(context.container)
        env = {}
        for item in attrs["Config"].get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def settings(self, key):
        """Return the strategy's ``<key>`` section (``redis_settings``, ...)."""
        value = (self.context.strategy.settings or {}).get(key)
        return value if isinstance(value, dict) else {}

    def exec_text(self, cmd, *, user="", environment=None):
        """Run ``cmd`` in the service's container; return stdout, or fail."""
        context = self.context
        result = engine.exec_run(
            context.client,
            context.container,
            cmd,
            user=user,
            environment=environment,
        )
        if not result.ok:
            raise BackupError(
                f"{cmd[0]} in {context.service.name} exited with {result.exit_code}: "
                f"{result.stderr_text(500) or result.stdout.decode(errors='replace')}"
            )
        return result.stdout.decode("utf-8", "replace")

    def stream_from(self, cmd, *, user="", environment=None):
        """Return an exec stream of ``cmd``'s stdout in the service's container."""
        context = self.context
        return engine.exec_stream(
            context.client,
            context.container,
            cmd,
            user=user,
            environment=environment,
        )


def counted(chunks, check_cancel, *, every=64, on_bytes=None):
    """Yield ``chunks``, asking for a cancel every ``every`` chunks and
    reporting the bytes so far to ``on_bytes``."""
    total = 0
    for count, chunk in enumerate(chunks, start=1):
        total += len(chunk)
        if count % every == 0:
            check_cancel()
            if on_bytes is not None:
                on_bytes(total)
        yield chunk


def checked(stream, what, context):
    """Yield an exec stream's chunks; fail at its end if the command failed.

    The failure is raised while restic still waits for the end of its
    input, so restic is stopped and writes no snapshot of a broken dump.
    """
    yield from counted(stream, context.check_cancel, on_bytes=context.progress)
    result = stream.result
    if result is None or not result.ok:
        code = result.exit_code if result is not None else "unknown"
        detail = result.stderr_text(500) if result is not None else ""
        raise BackupError(f"{what} exited with {code}: {detail}")

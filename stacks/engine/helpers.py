"""Short-lived helper containers, and volume contents streamed as tar.

Some work has to happen next to the data on the Docker host: measuring a
disk, reading or writing a volume's files. A helper container does it. Each
carries the portal's labels, its purpose (``portal.helper``) and what
started it (``portal.helper.owner``: an operation id, a command), so one
left behind by a crash can be found with :func:`list_helpers` and removed
with :func:`remove_helpers`.

Volumes are read through a helper that mounts them read-only and is never
started: the engine serves ``GET /containers/{id}/archive`` from the mounted
volume, streamed, and writes ``PUT .../archive`` into a read-write mount the
same way.

:func:`helper_stream` runs a program as a helper's main process and streams
its output (restic next to a volume: progress as it goes); its standard
input is fed through the attached connection, so a secret the program reads
there (a repository password) is in no ``docker inspect``, command line or
label.
"""

import time
from contextlib import contextmanager

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import Mount

from . import labels
from .errors import EngineError, api_error_text
from .exec import CHUNK, STDERR_LIMIT, HijackedStream
from .specs import MountSpec

__all__ = [
    "DEFAULT_HELPER_IMAGE",
    "empty_volume",
    "VOLUME_MOUNT",
    "HelperStream",
    "helper_container",
    "helper_image",
    "helper_stream",
    "list_helpers",
    "read_volume",
    "remove_helpers",
    "run_helper",
    "write_volume",
]

DEFAULT_HELPER_IMAGE = "stackportal/busybox:local"
# Where helpers mount the volume they read or write; tar members of
# read_volume() start with this directory's name.
VOLUME_MOUNT = "/volume"
# Tar data is read from the engine in chunks of this size.
ARCHIVE_CHUNK = 1 << 20


def helper_image(environment):
    """Return the image helpers use in ``environment`` (``settings.helper_image``)."""
    return (getattr(environment, "settings", None) or {}).get(
        "helper_image", DEFAULT_HELPER_IMAGE
    )


def _environment_name(environment):
    return getattr(environment, "name", environment) or ""


@contextmanager
def helper_container(
    client,
    *,
    environment,
    purpose,
    owner="",
    image=None,
    command=None,
    mounts=(),
    network_mode="none",
    name=None,
    hostname=None,
    stdin_open=False,
    **options,
):
    r"""Create a labelled helper container; yield its id; remove it afterwards.

    The container is created, not started: start it with
    ``client.api.start`` when the work needs a process, or use it as it is
    for archive reads and writes. ``mounts`` are :class:`MountSpec`\ s (a
    named volume must exist: Docker would create an empty one) or docker
    ``Mount`` objects;
    ``network_mode`` a network name puts it on that network (``none``:
    none). ``name`` and ``hostname`` name the container and its host name;
    with ``stdin_open`` its standard input is open until the first attached
    client closes it. Other keywords are host-config options. It is removed
    (with its anonymous volumes) when the block ends, also on an error; one
    left by a killed process is found by its labels.
    """
    image = image or helper_image(environment)
    try:
        created = client.api.create_container(
            image,
            command=command,
            name=name,
            hostname=hostname,
            stdin_open=stdin_open,
            labels=labels.helper_labels(_environment_name(environment), purpose, owner),
            host_config=client.api.create_host_config(
                mounts=_mounts(client, mounts) or None,
                network_mode=network_mode,
                **options,
            ),
            # Not detached when stdin is open: docker-py then sets StdinOnce,
            # so the program sees EOF when the attached writer is done.
            detach=not stdin_open,
        )
    except ImageNotFound as exc:
        raise EngineError(
            f"Helper image {image} for {purpose} is not on the Docker host: "
            f"{api_error_text(exc)}"
        ) from exc
    except APIError as exc:
        raise EngineError(
            f"Helper container for {purpose} not created: {api_error_text(exc)}"
        ) from exc
    cid = created["Id"]
    try:
        yield cid
    finally:
        try:
            client.api.remove_container(cid, v=True, force=True)
        except NotFound:
            pass


def run_helper(client, command, *, environment, purpose, timeout=300, **kwargs):
    """Run ``command`` in a helper; return ``(exit_code, output)`` (bytes).

    Output is stdout and stderr together; the helper is removed afterwards.
    """
    with helper_container(
        client, environment=environment, purpose=purpose, command=command, **kwargs
    ) as cid:
        client.api.start(cid)
        try:
            status = client.api.wait(cid, timeout=timeout)
        except Exception as exc:  # noqa: BLE001  (requests' read timeout)
            raise EngineError(
                f"Helper for {purpose} did not finish within {timeout} s: {exc}"
            ) from exc
        output = client.api.logs(cid, stdout=True, stderr=True)
        return status.get("StatusCode"), output


class HelperStream(HijackedStream):
    """A helper's main process, attached: iterate for stdout chunks, then read
    :attr:`result` (exit code, the end of stderr).

    The connection is attached before the container starts, so no output is
    lost; ``stdin`` (an iterable of bytes) is written to the process's
    standard input, which closes when it is exhausted.
    """

    def __init__(
        self, client, container_id, cmd, *, stdin=None, chunk_size=CHUNK, timeout=None
    ):
        super().__init__(
            client,
            container_id,
            cmd,
            stdin=stdin,
            chunk_size=chunk_size,
            stderr_limit=STDERR_LIMIT,
        )
        self.timeout = timeout
        api = client.api
        params = {"stdout": 1, "stderr": 1, "stream": 1}
        if stdin is not None:
            params["stdin"] = 1
        try:
            response = api.post(
                api._url("/containers/{0}/attach", container_id),
                params=params,
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                stream=True,
            )
            self._open(response, f"helper-{container_id[:12]}")
            api.start(container_id)
        except APIError as exc:
            self.close()
            raise EngineError(
                f"Helper {container_id[:12]} ({self.cmd[0]}) did not start: "
                f"{api_error_text(exc)}"
            ) from exc

    def _exit_code(self):
        try:
            status = self.client.api.wait(self.container_id, timeout=self.timeout or 60)
        except Exception as exc:  # noqa: BLE001  (requests' read timeout)
            raise EngineError(
                f"Helper {self.container_id[:12]} ({self.cmd[0]}) did not end: {exc}"
            ) from exc
        return status.get("StatusCode")


@contextmanager
def helper_stream(
    client,
    command,
    *,
    environment,
    purpose,
    owner="",
    stdin=None,
    chunk_size=CHUNK,
    **kwargs,
):
    """Run ``command`` as a helper's main process; yield a :class:`HelperStream`.

    Keywords are :func:`helper_container`'s (``image``, ``mounts``,
    ``network_mode``, ``name``, ``hostname``, host-config options). The
    helper is removed when the block ends; leaving it early (a cancel)
    removes it while the program runs, which stops the program.
    """
    with helper_container(
        client,
        environment=environment,
        purpose=purpose,
        owner=owner,
        command=command,
        stdin_open=stdin is not None,
        **kwargs,
    ) as cid:
        stream = HelperStream(client, cid, command, stdin=stdin, chunk_size=chunk_size)
        with stream:
            yield stream


def list_helpers(client, *, purpose=None, environment=None, owner=None):
    """Return the summaries of helper containers (all, or those matching)."""
    return client.api.containers(
        all=True,
        filters={
            "label": labels.selector(
                managed="true",
                helper=purpose or True,
                environment=_environment_name(environment) or None,
                helper_owner=owner,
            )
        },
    )


def remove_helpers(
    client, *, purpose=None, environment=None, owner=None, older_than=None
):
    """Remove helper containers left behind; return their names.

    ``older_than`` (seconds) spares helpers created more recently, which may
    still be at work.
    """
    removed = []
    now = time.time()
    for summary in list_helpers(
        client, purpose=purpose, environment=environment, owner=owner
    ):
        if older_than is not None and now - (summary.get("Created") or now) < (
            older_than
        ):
            continue
        try:
            client.api.remove_container(summary["Id"], v=True, force=True)
        except NotFound:
            continue
        removed.append((summary.get("Names") or ["/?"])[0].lstrip("/"))
    return removed


def _mounts(client, mounts):
    found = []
    for mount in mounts:
        if isinstance(mount, MountSpec):
            if mount.type == "volume":
                _volume_mount(client, mount.source, read_only=mount.read_only)
            mount = Mount(
                target=mount.target,
                source=mount.source or None,
                type=mount.type,
                read_only=mount.read_only,
            )
        found.append(mount)
    return found


def _volume_mount(client, volume, *, read_only):
    try:
        client.api.inspect_volume(volume)
    except NotFound as exc:
        raise EngineError(f"Volume {volume} does not exist on the Docker host") from exc
    return Mount(target=VOLUME_MOUNT, source=volume, type="volume", read_only=read_only)


def read_volume(client, volume, *, environment, owner="", path="", chunk=ARCHIVE_CHUNK):
    """Yield the files of ``volume`` (under ``path``) as a tar stream.

    Members are named ``volume/...`` (the mount's basename). The volume is
    mounted read-only by a helper that is never started; nothing is held in
    memory beyond one chunk.
    """
    mount = _volume_mount(client, volume, read_only=True)
    source = VOLUME_MOUNT + ("/" + path.strip("/") if path.strip("/") else "")
    with helper_container(
        client,
        environment=environment,
        purpose="volume.read",
        owner=owner,
        mounts=[mount],
    ) as cid:
        try:
            stream, _stat = client.api.get_archive(cid, source, chunk_size=chunk)
        except NotFound as exc:
            raise EngineError(f"{path or '/'} not found in volume {volume}") from exc
        except APIError as exc:
            raise EngineError(
                f"Volume {volume} could not be read: {api_error_text(exc)}"
            ) from exc
        yield from stream


def write_volume(client, volume, tar_chunks, *, environment, owner=""):
    """Unpack a tar stream of :func:`read_volume`'s shape into ``volume``.

    Members named ``volume/...`` land at the volume's root; ownership and
    modes come from the tar. Existing files of the same name are replaced,
    others are left alone. ``tar_chunks`` is an iterable of bytes, sent as
    it is read.
    """
    mount = _volume_mount(client, volume, read_only=False)
    with helper_container(
        client,
        environment=environment,
        purpose="volume.write",
        owner=owner,
        mounts=[mount],
    ) as cid:
        try:
            ok = client.api.put_archive(cid, "/", iter(tar_chunks))
        except APIError as exc:
            raise EngineError(
                f"Volume {volume} could not be written: {api_error_text(exc)}"
            ) from exc
        if not ok:
            raise EngineError(f"Volume {volume} could not be written")


def empty_volume(client, volume, *, environment, owner=""):
    """Delete every file in ``volume`` (the volume itself stays, with its
    labels), from a helper next to the data; raise EngineError on failure."""
    mount = _volume_mount(client, volume, read_only=False)
    code, output = run_helper(
        client,
        [
            "find",
            VOLUME_MOUNT,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-exec",
            "rm",
            "-rf",
            "{}",
            "+",
        ],
        environment=environment,
        purpose="volume.empty",
        owner=owner,
        mounts=[mount],
        timeout=3600,
    )
    if code != 0:
        raise EngineError(
            f"Volume {volume} was not emptied (exit {code}): "
            f"{output.decode('utf-8', 'replace').strip()[-500:]}"
        )

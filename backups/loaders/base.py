"""What every loader shares: the snapshot read, the container written, the
comparison with the manifest."""

from dataclasses import dataclass, field

from stacks import engine

from ..strategies import BackupContext
from ..tiers import BackupError

__all__ = [
    "Loader",
    "RestoreRefused",
    "Source",
    "Target",
    "counts",
    "item",
    "read_chunks",
]


class RestoreRefused(BackupError):
    """A snapshot that cannot be loaded into this target; the message says
    why (before anything is touched)."""


@dataclass
class Source:
    """The snapshot a load reads.

    ``paths`` are the snapshot's paths (restic's JSON: ``/multimodal.full
    .dump``, ``/volumes/models``); ``manifest`` what the data held when it
    was read (empty when no record of the snapshot is known).
    """

    repository: object
    tier: object
    snapshot_id: str
    strategy: str
    manifest: dict = field(default_factory=dict)
    paths: list = field(default_factory=list)
    record: object = None

    def __str__(self):
        return f"snapshot {self.snapshot_id[:8]} in {self.tier.name}"

    @property
    def file(self):
        """The one file a stream backup holds (``/multimodal.full.dump``)."""
        if len(self.paths) != 1:
            raise BackupError(
                f"{self} holds {len(self.paths)} paths, not the one file of a "
                f"{self.strategy} backup."
            )
        return self.paths[0]


@dataclass
class Target:
    """Where the data goes: a container of the service, live or a copy.

    ``container`` is its id, ``spec`` its (unresolved) ServiceSpec,
    ``volumes`` its named volumes (``{key: Docker volume}``), ``endpoint``
    where its S3 API answers (MinIO). ``scratch`` is True for a restore
    drill's copy, False for the live service.
    """

    environment: object
    service: object
    strategy_row: object
    client: object
    log: object
    check_cancel: object
    owner: str = ""
    container: str = ""
    spec: object = None
    volumes: dict = field(default_factory=dict)
    endpoint: str = ""
    scratch: bool = False
    health_timeout: float = 180.0

    @property
    def name(self):
        return self.service.name if self.service is not None else "config"

    def context(self):
        """Return the BackupContext the strategies' manifest code reads."""
        return BackupContext(
            environment=self.environment,
            stack=self.service.stack if self.service is not None else None,
            service=self.service,
            strategy=self.strategy_row,
            client=self.client,
            container=self.container,
            log=self.log,
            check_cancel=self.check_cancel,
            owner=self.owner,
            endpoint=self.endpoint,
            volumes=dict(self.volumes) if self.volumes else None,
        )

    def volume_keys(self):
        """Return the keys of the named volumes the service mounts (its spec
        when known, else the volumes given)."""
        if self.spec is not None:
            return sorted(
                {m.key for m in self.spec.mounts if m.type == "volume" and m.key}
            )
        return sorted(self.volumes)

    def volume_at(self, path):
        """Return the Docker volume mounted at ``path`` in the container."""
        path = path.rstrip("/") or "/"
        for mount in self.spec.mounts if self.spec is not None else []:
            if mount.type == "volume" and mount.target.rstrip("/") == path:
                if mount.key in self.volumes:
                    return self.volumes[mount.key]
        return None

    def restart(self):
        """Start the container again and wait until it is ready."""
        engine.start_container(self.client, self.container, self.name)
        engine.wait_ready(
            self.client,
            {self.name: self.container},
            timeout=self.health_timeout,
            check_cancel=self.check_cancel,
            log=self.log,
        )


def item(what, expected, found):
    """Return one compared fact of a proof."""
    return {"what": what, "expected": expected, "found": found, "ok": expected == found}


class Loader:
    """How one kind of data goes back into a container, and is measured there.

    Subclasses implement :meth:`load` (put the snapshot's data into the
    target), :meth:`measure` (what the target holds now, in the manifest's
    shape, by the backup strategy's own code) and :meth:`compare` (the
    manifest against a measurement, fact by fact); a live restore also asks
    :meth:`overwrites` (what the load replaces, for the plan).
    """

    #: Container ports a drill's copy publishes on the host's 127.0.0.1
    #: (the worker talks to them: MinIO's S3 API).
    publish = ()
    #: Whether a drill starts a copy of the service to load into.
    needs_container = True
    #: Whether a snapshot of this kind can go onto the live service.
    live = True

    def __init__(self, source, target):
        self.source = source
        self.target = target

    @property
    def log(self):
        return self.target.log

    def check(self):
        """Raise RestoreRefused when this snapshot cannot be loaded."""

    def overwrites(self):
        """Return ``(what is replaced, facts)`` for a live restore's plan:
        the first part is hashed, the facts (sizes, counts) are not."""
        return {}, {}

    def load(self):
        """Load the snapshot's data into the target; return facts."""
        raise NotImplementedError

    def measure(self):
        """Return what the target holds now (the manifest's shape)."""
        raise NotImplementedError

    def compare(self, found):
        """Return the compared facts (:func:`item`) of the manifest and
        ``found``."""
        raise NotImplementedError


def counts(what, expected, found, *, missing=None, extras=True):
    """Return items comparing two ``{name: count}`` maps: the names of both,
    or with ``extras`` False only the expected ones (a live service may hold
    more than its backup: a table created since stays)."""
    items = []
    names = set(expected) | (set(found) if extras else set())
    for name in sorted(names):
        items.append(
            item(
                what.format(name=name),
                expected.get(name, missing),
                found.get(name, missing),
            )
        )
    return items


def read_chunks(handle, chunk=1 << 20):
    """Yield the blocks of a readable file (a tar member) until its end."""
    while True:
        block = handle.read(chunk)
        if not block:
            return
        yield block

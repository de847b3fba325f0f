"""Volumes: every named volume of the service, read as files by restic.

For services backed up as ``filesystem`` or ``snapshot`` (vLLM's model
cache, the multimodal worker's cache, the Allure results, Elasticsearch's
data): the named volumes the service mounts in the environment (its
stack plan: ``key`` → Docker volume) are read by restic in a helper next
to them (:mod:`backups.volumes`), each at ``/volumes/<key>``, into the
first tier's repository folder. A second backup of unchanged volumes
reads no file again: restic compares each file's size, times and inode
with the parent snapshot's. The first tier must therefore be a folder on
the Docker host (a filesystem or nfs tier).

Backup types (``make backup-service BACKUP_TYPE=...`` passes the type):

``full``          ``--force``: every file is read again;
``incremental``   restic's parent: the newest snapshot of the same paths
                  and host (``portal-<environment>``);
``differential``  ``--parent`` the newest ``type=full`` snapshot of the
                  service, so each differential is relative to the last
                  full one (the first, with no full one yet, reads
                  everything).

Locks left by killed helpers are removed first; restic's JSON progress
reaches the operation's progress. The manifest, taken by a helper that
mounts the same volumes read-only: per volume the number of files, their
bytes, and the sha256 of a sample of files (those whose path hashes
lowest: the same files while they do not change).
"""

import hashlib
import heapq

from stacks import engine
from stacks.compose import stack_plan

from ..choices import TierKind
from ..tiers import BackupError, local_path
from ..volumes import (
    VOLUMES_MOUNT,
    remove_stale_helper_locks,
    restic_image,
    run_restic,
)
from .base import Strategy

__all__ = ["VolumesStrategy"]

SAMPLE_FILES = 3
# The manifest helper sleeps at most this long; one left by a killed
# worker ends by itself.
HELPER_LIFETIME = 6 * 3600
MANIFEST_PURPOSE = "volume.manifest"


class VolumesStrategy(Strategy):
    """The named volumes of a service, backed up by restic next to them."""

    def __init__(self, context, name):
        super().__init__(context)
        self.name = name
        tier = context.tier
        if tier is not None and tier.kind not in TierKind.HOST_PATHS:
            raise BackupError(
                f"Volume backups are written by restic in a helper on the Docker "
                f"host into the first storage tier's folder, so that tier must be a "
                f"filesystem or nfs tier; {tier.name} (the first tier of "
                f"{context.environment.name}) is {tier.kind}. Put a filesystem tier "
                f"first in environments.{context.environment.name}.storage_tiers "
                "(configs/backup-strategies.yaml)."
            )
        self.volumes = self._volumes()

    @property
    def service(self):
        return self.context.service.name

    def _volumes(self):
        context = self.context
        if context.volumes is not None:
            return sorted(context.volumes.items())
        plan = stack_plan(context.environment, context.service.stack)
        spec = next(s for s in plan.services if s.name == self.service)
        found = {
            m.key: m.source
            for m in spec.mounts
            if m.type == "volume" and m.key and m.source
        }
        if not found:
            raise BackupError(
                f"Service {self.service} mounts no named volume in "
                f"{context.environment.name}: the volumes strategy has nothing to "
                "read."
            )
        return sorted(found.items())

    def mounts(self):
        return [
            engine.MountSpec("volume", f"{VOLUMES_MOUNT}/{key}", source, True, key)
            for key, source in self.volumes
        ]

    def paths(self):
        return [f"{VOLUMES_MOUNT}/{key}" for key, _source in self.volumes]

    # -- manifest -------------------------------------------------------------

    def manifest(self):
        context = self.context
        client = context.client
        volumes = {
            key: {"volume": source, "files": 0, "bytes": 0, "sample": {}}
            for key, source in self.volumes
        }
        lowest = {key: [] for key in volumes}
        with engine.helper_container(
            client,
            environment=context.environment,
            purpose=MANIFEST_PURPOSE,
            owner=context.owner,
            image=restic_image(context.environment),
            command=["sleep", str(HELPER_LIFETIME)],
            mounts=self.mounts(),
            init=True,
        ) as helper:
            client.api.start(helper)
            listing = engine.exec_stream(
                client,
                helper,
                ["find", *self.paths(), "-type", "f", "-printf", "%s\\t%p\\0"],
            )
            rest = b""
            with listing:
                for chunk in listing:
                    rest += chunk
                    *entries, rest = rest.split(b"\0")
                    for entry in entries:
                        self._count(entry, volumes, lowest)
            if listing.result is None or not listing.result.ok:
                raise BackupError(
                    f"Listing the volumes of {self.service} failed: "
                    f"{listing.result.stderr_text(300) if listing.result else ''}"
                )
            sample = sorted(path for heap in lowest.values() for _rank, path in heap)
            if sample:
                for path, digest in self._digests(helper, sample).items():
                    key = path[len(VOLUMES_MOUNT) + 1 :].split("/", 1)[0]
                    inside = path[len(VOLUMES_MOUNT) + 2 + len(key) :]
                    volumes[key]["sample"][inside] = digest
        return {
            "engine": "volumes",
            "volumes": volumes,
            "files": sum(v["files"] for v in volumes.values()),
            "bytes": sum(v["bytes"] for v in volumes.values()),
            "paths": self.paths(),
        }

    def _count(self, entry, volumes, lowest):
        size, _, raw = entry.partition(b"\t")
        path = raw.decode("utf-8", "surrogateescape")
        key = path[len(VOLUMES_MOUNT) + 1 :].split("/", 1)[0]
        if key not in volumes:
            return
        volumes[key]["files"] += 1
        volumes[key]["bytes"] += int(size)
        rank = -int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")
        heap = lowest[key]
        if len(heap) < SAMPLE_FILES:
            heapq.heappush(heap, (rank, path))
        elif (rank, path) > heap[0]:
            heapq.heapreplace(heap, (rank, path))

    def _digests(self, helper, paths):
        result = engine.exec_run(
            self.context.client,
            helper,
            ["sha256sum", "--zero", "--", *paths],
        )
        if not result.ok:
            raise BackupError(
                f"Hashing sample files of {self.service} failed: "
                f"{result.stderr_text(300)}"
            )
        digests = {}
        for line in result.stdout.split(b"\0"):
            if line:
                digest, _, path = line.partition(b"  ")
                digests[path.decode("utf-8", "surrogateescape")] = digest.decode()
        return digests

    # -- the data -------------------------------------------------------------

    def backup(self, repository, *, tags, host):
        context = self.context
        log = context.log
        removed = remove_stale_helper_locks(context.client, repository)
        for hostname in removed:
            log.warning(
                f"{repository.name}: removed a stale lock of restic helper {hostname} "
                "(it no longer runs)"
            )
        args = ["backup", "--json", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        args += self._type_args(repository)
        args += self.paths()
        progress = context.progress

        def on_message(message):
            if progress is not None and message.get("message_type") == "status":
                progress(message.get("bytes_done") or 0)

        summary = run_restic(
            context.client,
            repository,
            args,
            environment=context.environment,
            repository_path=local_path(context.tier, context.environment),
            mounts=self.mounts(),
            owner=context.owner,
            on_message=on_message,
            check_cancel=context.check_cancel,
        )
        log.info(
            f"{self.service}: {summary.get('files_new', 0)} new, "
            f"{summary.get('files_changed', 0)} changed, "
            f"{summary.get('files_unmodified', 0)} unchanged files"
        )
        return summary

    def _type_args(self, repository):
        backup_type = self.context.parameters.get("backup_type") or "incremental"
        if backup_type == "full":
            return ["--force"]
        if backup_type == "differential":
            fulls = repository.snapshots(
                "type=full", f"service={self.service}", f"strategy={self.name}"
            )
            if not fulls:
                self.context.log.info(
                    f"{self.service}: no full backup yet; this differential one "
                    "reads every file"
                )
                return ["--force"]
            parent = max(fulls, key=lambda s: s.get("time", ""))["id"]
            self.context.log.info(
                f"{self.service}: differential to full snapshot {parent[:8]}"
            )
            return ["--parent", parent]
        return []

"""Volumes: the files of a volume snapshot written back into volumes.

A volume snapshot holds ``/volumes/<key>`` per named volume of the service.
Every container that mounts one of the target volumes and runs is stopped
first (on the live service: the service and whatever shares its volumes),
each volume is emptied (so files written after the backup do not stay),
then the files go back with their owners, modes and times:

- from a filesystem or nfs tier, by ``restic restore --target /`` in a
  restic helper next to the volumes (the same image and mounts as the
  backup: ``/volumes/<key>`` read-write, the repository folder);
- from another tier (sftp, s3), by ``restic dump --archive tar`` on the
  worker, streamed into a helper that mounts the volumes (the engine's
  archive upload unpacks it there).

The stopped containers are started again and waited for.
"""

from stacks import engine

from ..choices import TierKind
from ..strategies.volumes import VolumesStrategy
from ..tiers import BackupError, local_path
from ..volumes import VOLUMES_MOUNT, run_restic
from .base import Loader, RestoreRefused, counts, item

__all__ = ["VolumesLoader"]

HELPER_PURPOSE = "backup.restore"


class VolumesLoader(Loader):
    """Files of named volumes, back into named volumes."""

    needs_container = False

    def keys(self):
        """Return the volume keys the snapshot holds."""
        prefix = f"{VOLUMES_MOUNT}/"
        keys = [p[len(prefix) :] for p in self.source.paths if p.startswith(prefix)]
        if not keys or len(keys) != len(self.source.paths):
            raise RestoreRefused(
                f"{self.source} holds {', '.join(self.source.paths) or 'nothing'}, "
                f"not the {VOLUMES_MOUNT}/<volume> folders of a volume backup."
            )
        return sorted(keys)

    def check(self):
        mounted = self.target.volume_keys()
        missing = [key for key in self.keys() if key not in mounted]
        if missing:
            raise RestoreRefused(
                f"{self.source} holds volume(s) {', '.join(missing)}, which "
                f"{self.target.name} does not mount in "
                f"{self.target.environment.name} (it mounts: "
                f"{', '.join(mounted) or 'none'})."
            )

    def volumes(self):
        return {key: self.target.volumes[key] for key in self.keys()}

    def users(self):
        """Return the running containers that mount a target volume."""
        found = {}
        for volume in self.volumes().values():
            for summary in engine.containers_using_volume(self.target.client, volume):
                if summary.get("State") == "running":
                    found[summary["Id"]] = summary
        return sorted(found.values(), key=lambda s: (s.get("Names") or [""])[0])

    def overwrites(self):
        volumes = self.volumes()
        manifest = self.source.manifest.get("volumes") or {}
        return (
            {
                "volumes": [{"key": k, "volume": v} for k, v in volumes.items()],
                "replaces": "every file of these volumes",
                "stops": [_name(s) for s in self.users()],
            },
            {
                "files": {k: (manifest.get(k) or {}).get("files") for k in volumes},
                "bytes": {k: (manifest.get(k) or {}).get("bytes") for k in volumes},
            },
        )

    def load(self):
        target = self.target
        client = target.client
        volumes = self.volumes()
        stopped = []
        for summary in self.users():
            engine.stop_container(client, summary["Id"], timeout=60)
            stopped.append(summary)
            self.log.info(f"{_name(summary)}: stopped (it mounts a volume restored)")
        try:
            for volume in volumes.values():
                engine.empty_volume(
                    client, volume, environment=target.environment, owner=target.owner
                )
            self.log.info(f"emptied {', '.join(volumes.values())}")
            mounts = [
                engine.MountSpec("volume", f"{VOLUMES_MOUNT}/{key}", volume)
                for key, volume in volumes.items()
            ]
            if self.source.tier.kind in TierKind.HOST_PATHS:
                self._restore_in_helper(mounts)
            else:
                self._restore_stream(mounts)
            self.log.info(f"{target.name}: files of {self.source} restored")
        finally:
            for summary in stopped:
                engine.start_container(client, summary["Id"], _name(summary))
            if stopped:
                engine.wait_ready(
                    client,
                    {_name(s): s["Id"] for s in stopped},
                    timeout=target.health_timeout,
                    check_cancel=target.check_cancel,
                    log=self.log,
                )
        return {"volumes": volumes, "restarted": [_name(s) for s in stopped]}

    def _restore_in_helper(self, mounts):
        target, source = self.target, self.source
        run_restic(
            target.client,
            source.repository,
            ["restore", source.snapshot_id, "--target", "/"],
            environment=target.environment,
            repository_path=local_path(source.tier, target.environment),
            mounts=mounts,
            owner=target.owner,
            check_cancel=target.check_cancel,
        )

    def _restore_stream(self, mounts):
        target, source = self.target, self.source
        client = target.client
        with engine.helper_container(
            client,
            environment=target.environment,
            purpose=HELPER_PURPOSE,
            owner=target.owner,
            mounts=mounts,
        ) as helper:
            with source.repository.dump(
                source.snapshot_id, VOLUMES_MOUNT, archive="tar"
            ) as data:
                if not client.api.put_archive(helper, "/", data):
                    raise BackupError(
                        f"The files of {source} could not be written into the volumes."
                    )

    def measure(self):
        context = self.target.context()
        context.volumes = self.volumes()
        return VolumesStrategy(context, self.source.strategy).manifest()

    def compare(self, found):
        expected = self.source.manifest.get("volumes") or {}
        got = found.get("volumes") or {}
        items = []
        for what in ("files", "bytes"):
            items += counts(
                f"{what} in {{name}}",
                {k: v.get(what) for k, v in expected.items()},
                {k: v.get(what) for k, v in got.items()},
                missing="no volume",
            )
        for key, facts in sorted(expected.items()):
            sample = (got.get(key) or {}).get("sample") or {}
            for path, digest in sorted((facts.get("sample") or {}).items()):
                items.append(
                    item(f"sha256 of {key}/{path}", digest, sample.get(path, "missing"))
                )
        return items


def _name(summary):
    return (summary.get("Names") or ["/?"])[0].lstrip("/")

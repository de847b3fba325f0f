"""Qdrant: every collection recovered from its snapshot through the API.

The backup's ``collections.tar`` streams from restic into the container
(the engine's archive upload: nothing is written on the worker), each
``<collection>.snapshot`` into a folder of its own under Qdrant's
snapshots path (``qdrant_settings.snapshots_path``, default
``/qdrant/snapshots``: Qdrant recovers local files only from there). Then,
per collection, from a helper on the container's network as the backup
does (Qdrant 1.12's ``recover_from_snapshot``)::

    PUT /collections/{name}/snapshots/recover?wait=true
        {"location": "file:///qdrant/snapshots/<folder>/<name>.snapshot",
         "checksum": "<sha256 the backup recorded>"}

which replaces the collection by the snapshot's (creating it when it does
not exist). Collections that are not in the backup are left alone. The
folder is removed afterwards.
"""

import json
import tarfile
from urllib.parse import quote

from stacks import engine

from ..strategies.qdrant import ARCHIVE_NAME, INDEX_NAME, QdrantStrategy
from ..tarstream import ChunkReader, directory, member, tar_stream
from ..tiers import BackupError
from .base import Loader, counts, item, read_chunks

__all__ = ["QdrantLoader"]

DEFAULT_SNAPSHOTS_PATH = "/qdrant/snapshots"


class QdrantLoader(Loader):
    """Collection snapshots recovered through Qdrant's API."""

    def strategy(self):
        return QdrantStrategy(self.target.context(), self.source.strategy)

    def folder(self, impl):
        base = str(impl.options.get("snapshots_path") or DEFAULT_SNAPSHOTS_PATH)
        return f"{base.rstrip('/')}/portal-restore-{self.target.owner[:8] or 'manual'}"

    def overwrites(self):
        collections = self.source.manifest.get("collections") or {}
        return (
            {"collections": sorted(collections)},
            {"points": {name: c.get("points") for name, c in collections.items()}},
        )

    def load(self):
        target, source = self.target, self.source
        impl = self.strategy()
        folder = self.folder(impl)
        index = {}
        with source.repository.dump(source.snapshot_id, f"/{ARCHIVE_NAME}") as data:
            uploaded = target.client.api.put_archive(
                target.container, "/", tar_stream(self._members(data, folder, index))
            )
        if not uploaded:
            raise BackupError(
                f"The snapshots could not be copied into {target.name}'s container."
            )
        self.log.info(
            f"{target.name}: {len(index)} collection snapshot(s) copied to {folder}"
        )
        recovered = []
        try:
            with impl.helper() as helper:
                for name, description in index.items():
                    target.check_cancel()
                    body = {"location": f"file://{quote(f'{folder}/{name}.snapshot')}"}
                    if description.get("checksum"):
                        body["checksum"] = description["checksum"]
                    path = f"/collections/{quote(name, safe='')}/snapshots/recover"
                    impl.request(helper, "PUT", f"{path}?wait=true", body)
                    recovered.append(name)
                    self.log.info(f"{target.name}: collection {name} recovered")
        finally:
            self._remove(folder)
        return {"collections": recovered}

    def _members(self, data, folder, index):
        base = folder.strip("/")
        yield directory(base), []
        with tarfile.open(fileobj=ChunkReader(data), mode="r|") as archive:
            for entry in archive:
                if not entry.isfile():
                    continue
                handle = archive.extractfile(entry)
                if entry.name == INDEX_NAME:
                    index.update(json.loads(handle.read()))
                    continue
                name = entry.pax_headers.get("QDRANT.collection") or (
                    entry.name.removesuffix(".snapshot")
                )
                if name not in index:
                    raise BackupError(
                        f"{self.source}: {entry.name} is not in {INDEX_NAME}."
                    )
                yield member(f"{base}/{name}.snapshot", entry.size), read_chunks(handle)

    def _remove(self, folder):
        target = self.target
        try:
            result = engine.exec_run(
                target.client, target.container, ["rm", "-rf", "--", folder]
            )
            ok, detail = result.ok, result.stderr_text(200)
        except engine.EngineError as exc:
            ok, detail = False, str(exc)
        if not ok:
            self.log.warning(
                f"{target.name}: the copied snapshots in {folder} were not removed: "
                f"{detail}"
            )

    def measure(self):
        return self.strategy().manifest()

    def compare(self, found):
        expected = {
            name: c.get("points")
            for name, c in (self.source.manifest.get("collections") or {}).items()
        }
        collections = found.get("collections") or {}
        got = {name: c.get("points") for name, c in collections.items()}
        if not self.target.scratch:
            # Collections that are not in the backup stay on the live service.
            got = {name: points for name, points in got.items() if name in expected}
        return [
            *counts("points of {name}", expected, got, missing="no collection"),
            item(
                "points",
                self.source.manifest.get("points"),
                sum(p for p in got.values() if isinstance(p, int)),
            ),
        ]

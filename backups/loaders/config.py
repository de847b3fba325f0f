"""The configuration backup: read back and checked file by file.

``config.tar`` streams from restic and every member's bytes are hashed;
the drill compares the number of files, their bytes and each file's sha256
with the manifest taken when the archive was written. Nothing is loaded
anywhere: the portal's configuration changes through its gate
(``import_configs``), so a configuration backup is not restored onto a
live service; its files are restored by hand (``restic restore``).
"""

import hashlib
import tarfile

from ..strategies.config import ARCHIVE_NAME
from ..tarstream import ChunkReader
from .base import Loader, RestoreRefused, item, read_chunks

__all__ = ["ConfigLoader"]


class ConfigLoader(Loader):
    """The configuration archive, hashed member by member."""

    needs_container = False
    live = False

    def check(self):
        if not self.target.scratch:
            raise RestoreRefused(
                "A configuration backup is not restored onto a live service: the "
                "configuration changes through import_configs. Restore its files "
                "by hand (restic restore, see the record page) and import them."
            )

    def load(self):
        source = self.source
        checksums, total = {}, 0
        with source.repository.dump(source.snapshot_id, f"/{ARCHIVE_NAME}") as data:
            with tarfile.open(fileobj=ChunkReader(data), mode="r|") as archive:
                for entry in archive:
                    if not entry.isfile():
                        continue
                    digest = hashlib.sha256()
                    for block in read_chunks(archive.extractfile(entry)):
                        digest.update(block)
                    checksums[entry.name] = digest.hexdigest()
                    total += entry.size
                    self.target.check_cancel()
        self.found = {"files": len(checksums), "bytes": total, "checksums": checksums}
        return {"files": len(checksums)}

    def measure(self):
        return self.found

    def compare(self, found):
        expected = self.source.manifest.get("checksums") or {}
        got = found.get("checksums") or {}
        return [
            item("files", self.source.manifest.get("files"), found.get("files")),
            item("bytes", self.source.manifest.get("bytes"), found.get("bytes")),
            *(
                item(
                    f"sha256 of {name}",
                    expected.get(name, "absent"),
                    got.get(name, "absent"),
                )
                for name in sorted(set(expected) | set(got))
            ),
        ]

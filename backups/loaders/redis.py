"""Redis: ``dump.rdb`` or the append-only directory written into the data
volume of a stopped server, which loads it when it starts again.

The server says where its files are (``CONFIG GET dir``, ``dbfilename``,
``appendonly``, ``appenddirname``, ``appendfilename``) while it still
runs; that folder must be a named volume of the service. Then:

1. the server is stopped;
2. a helper next to the volume removes the RDB file and the append-only
   directory (a server with ``appendonly yes`` would load its old AOF, or
   make an empty one, and ignore a new RDB);
3. the backup's files are written in, owned as the folder is:
   - ``rdb`` into a server running without ``appendonly``: the RDB file
     as ``<dbfilename>``;
   - ``rdb`` into a server with ``appendonly yes``: the RDB file as the
     *base* of a new append-only directory (``<appendfilename>.1.base.rdb``,
     an empty ``.1.incr.aof`` and the manifest naming both, Redis 7's
     layout; a single ``<appendfilename>`` with an RDB preamble on older
     servers), which Redis loads exactly as it loads an RDB file;
   - ``aof``: the backed-up append-only directory, renamed to the server's
     ``appenddirname``; a server without ``appendonly`` would ignore it,
     so that is refused;
4. the server is started and waited for (its healthcheck answers once the
   data is loaded).
"""

import tarfile

from stacks import engine

from ..strategies.redis import RedisStrategy
from ..tarstream import ChunkReader, directory, member, tar_stream
from ..tiers import BackupError
from .base import Loader, RestoreRefused, counts, item, read_chunks

__all__ = ["RedisLoader", "aof_manifest"]

HELPER_PURPOSE = "backup.restore"
# Inside write_volume's tar: members under this folder land in the volume.
VOLUME_PREFIX = engine.helpers.VOLUME_MOUNT.strip("/")
# Stops the script when the folder is missing; prints its owner, then
# removes what is named after the script's own name.
CLEAR_SCRIPT = 'stat -c %u:%g "$0" && cd "$0" && rm -rf -- "$@"'


def aof_manifest(appendfilename):
    """Return Redis 7's manifest of a base-only append-only directory."""
    return (
        f"file {appendfilename}.1.base.rdb seq 1 type b\n"
        f"file {appendfilename}.1.incr.aof seq 1 type i\n"
    ).encode()


def _plain_name(value, what):
    if not value or "/" in value or value in (".", ".."):
        raise BackupError(f"Redis names its {what} {value!r}: not a plain file name.")
    return value


class RedisLoader(Loader):
    """An RDB file or an append-only directory, into Redis's data volume."""

    def strategy(self):
        return RedisStrategy(self.target.context(), self.source.strategy)

    def server_files(self, impl):
        """Return the server's file settings, and the volume of its folder."""
        config = {
            name: impl.config(name)
            for name in (
                "dir",
                "dbfilename",
                "appendonly",
                "appenddirname",
                "appendfilename",
            )
        }
        volume = self.target.volume_at(config["dir"])
        if volume is None:
            raise RestoreRefused(
                f"Redis in {self.target.name} keeps its files in {config['dir']}, "
                "which is not a named volume of the service: nothing there outlives "
                "its container to restore into."
            )
        if self.source.strategy == "aof" and config["appendonly"] != "yes":
            raise RestoreRefused(
                f"Redis in {self.target.name} runs without appendonly, so it would "
                "ignore the append-only files of an aof backup; restore an rdb "
                "backup, or run redis-server with --appendonly yes."
            )
        return config, volume

    def overwrites(self):
        config, volume = self.server_files(self.strategy())
        files = [config["dbfilename"]]
        files.append(config["appenddirname"] or config["appendfilename"])
        manifest = self.source.manifest
        return (
            {"volume": volume, "dir": config["dir"], "files": files},
            {"keys": manifest.get("keys"), "databases": manifest.get("databases")},
        )

    # -- load -------------------------------------------------------------------

    def load(self):
        target, source = self.target, self.source
        impl = self.strategy()
        config, volume = self.server_files(impl)
        names = [_plain_name(config["dbfilename"], "RDB file")]
        if config["appenddirname"]:
            names.append(_plain_name(config["appenddirname"], "append-only folder"))
        if config["appendfilename"]:
            names.append(_plain_name(config["appendfilename"], "append-only file"))
        self.log.info(f"{target.name}: stopping Redis to replace its files in {volume}")
        engine.stop_container(target.client, target.container, timeout=60)
        code, output = engine.run_helper(
            target.client,
            ["sh", "-c", CLEAR_SCRIPT, engine.helpers.VOLUME_MOUNT, *names],
            environment=target.environment,
            purpose=HELPER_PURPOSE,
            owner=target.owner,
            mounts=[engine.MountSpec("volume", engine.helpers.VOLUME_MOUNT, volume)],
        )
        text = output.decode("utf-8", "replace").strip()
        if code != 0:
            raise BackupError(
                f"The files of Redis in volume {volume} were not removed (exit "
                f"{code}): {text[-300:]}"
            )
        uid, _, gid = text.splitlines()[0].partition(":")
        owner = (int(uid), int(gid))
        with source.repository.dump(source.snapshot_id, source.file) as data:
            if source.strategy == "aof":
                members = self._aof_members(data, config, owner)
            else:
                size = source.repository.file_size(source.snapshot_id, source.file)
                members = self._rdb_members(data, size, config, owner)
            engine.write_volume(
                target.client,
                volume,
                tar_stream(members),
                environment=target.environment,
                owner=target.owner,
            )
        self.log.info(f"{target.name}: {source.file} written into {volume}")
        target.restart()
        return {"volume": volume, "files": names}

    def _rdb_members(self, data, size, config, owner):
        if config["appendonly"] != "yes":
            path = f"{VOLUME_PREFIX}/{config['dbfilename']}"
            yield _owned(member(path, size), owner), data
            return
        name = config["appendfilename"]
        if not config["appenddirname"]:
            # Before Redis 7: one AOF file; an RDB preamble is a valid start.
            yield _owned(member(f"{VOLUME_PREFIX}/{name}", size), owner), data
            return
        folder = f"{VOLUME_PREFIX}/{config['appenddirname']}"
        manifest = aof_manifest(name)
        yield _owned(directory(folder), owner), []
        yield _owned(member(f"{folder}/{name}.1.base.rdb", size), owner), data
        yield _owned(member(f"{folder}/{name}.1.incr.aof", 0), owner), []
        yield (
            _owned(member(f"{folder}/{name}.manifest", len(manifest)), owner),
            [manifest],
        )

    def _aof_members(self, data, config, owner):
        folder = config["appenddirname"] or ""
        with tarfile.open(fileobj=ChunkReader(data), mode="r|") as archive:
            for entry in archive:
                # appendonlydir/<file>: the backed-up server's folder name.
                _top, _, rest = entry.name.partition("/")
                path = "/".join(p for p in (VOLUME_PREFIX, folder, rest) if p)
                if entry.isdir():
                    yield _owned(directory(path, mode=entry.mode), owner), []
                elif entry.isfile():
                    info = member(path, entry.size, mtime=entry.mtime, mode=entry.mode)
                    yield _owned(info, owner), read_chunks(archive.extractfile(entry))

    # -- measure ------------------------------------------------------------------

    def measure(self):
        return self.strategy().manifest()

    def compare(self, found):
        expected = self.source.manifest.get("databases") or {}
        databases = found.get("databases") or {}
        return [
            *counts("keys in {name}", expected, databases, missing=0),
            item("keys", self.source.manifest.get("keys"), found.get("keys")),
        ]


def _owned(info, owner):
    info.uid, info.gid = owner
    return info

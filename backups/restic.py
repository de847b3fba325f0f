"""restic, run as a program with argument lists: one repository at a time.

:class:`Repository` knows where a repository is and how to open it (its
password and credentials come in the process environment of each restic
run, never on a command line or in a log line), runs restic's commands and
turns restic's failures into :class:`ResticError` messages that name the
tier: a wrong password, a repository locked by another restic, a full disk,
an unreachable server.

Data goes in as a stream (:meth:`Repository.backup_stream`: ``pg_dump``'s
output straight into ``restic backup --stdin``) or as files read by restic
itself (restic in a helper container next to a volume,
:mod:`backups.volumes`), and comes out as a stream (:meth:`Repository.dump`).
"""

import json
import os
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

__all__ = [
    "RESTIC",
    "CheckReport",
    "PackInfo",
    "Repository",
    "ResticError",
    "explain",
    "pack_group",
]

#: The restic program (Debian's package).
RESTIC = shutil.which("restic") or "/usr/bin/restic"
# Stderr kept from one run for its error message.
STDERR_LIMIT = 64 * 1024
# Bytes written to restic's standard input at a time.
PIPE_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackInfo:
    """One pack file of a repository, from its index."""

    id: str
    size: int
    data_blobs: int
    tree_blobs: tuple


@dataclass
class CheckReport:
    """What one ``restic check`` found.

    ``damaged_packs`` are the full ids of packs restic reported missing or
    unreadable or whose content does not match their id; packs no index
    references (left by an interrupted backup) are harmless and not listed.
    """

    ok: bool
    output: str
    damaged_packs: set = field(default_factory=set)
    damaged_pack_prefixes: set = field(default_factory=set)
    read_packs: int | None = None


# restic check's words for a damaged pack (0.14 .. 0.17).
_PACK_ERROR = re.compile(
    r"(?:\bpack ([0-9a-f]{64})(?!: not referenced in any index))"
    r"|(?:want ([0-9a-f]{64}), got)",
    re.I,
)
_PACK_LOAD_ERROR = re.compile(r"<data/([0-9a-f]{8,64})>")
_READ_PACKS = re.compile(r"read .*?\(out of total (\d+) packs", re.I)
_READ_PROGRESS = re.compile(r"(\d+) / (\d+) packs")


class ResticError(Exception):
    """A restic run failed; the message names the repository and why."""

    def __init__(self, message, *, kind="failed", stderr=""):
        super().__init__(message)
        self.kind = kind
        self.stderr = stderr


# (pattern in restic's stderr, kind, message after the repository's name)
_FAILURES = [
    (
        re.compile(r"wrong password or no key found", re.I),
        "password",
        "wrong repository password (the value of the variable the tier's "
        "password names does not open this repository)",
    ),
    (re.compile(r"repository is already locked", re.I), "locked", None),
    (re.compile(r"no space left on device|quota exceeded", re.I), "full", None),
    (
        re.compile(
            r"connection refused|dial tcp|no such host|ssh: connect to host|"
            r"unable to start the sftp session|connection (reset|closed)|"
            r"network is unreachable|i/o timeout|timeout",
            re.I,
        ),
        "unreachable",
        None,
    ),
    (
        re.compile(r"Is there a repository at the following location", re.I),
        "missing",
        "no repository there yet",
    ),
]


def explain(name, command, stderr):
    """Return a ResticError for a failed run of ``command`` on repository
    ``name`` (restic's stderr says why), wherever that restic ran."""
    text = stderr.strip()
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    for pattern, kind, message in _FAILURES:
        match = pattern.search(text)
        if not match:
            continue
        if kind == "locked":
            holder = re.search(r"already locked (?:exclusively )?by (.*)", text)
            since = re.search(r"lock was created at ([^\n(]*)", text)
            who = holder.group(1).strip() if holder else "an unknown process"
            when = f", since {since.group(1).strip()}" if since else ""
            message = (
                f"locked by another restic ({who}{when}); the lock is not removed "
                "while that restic may still run (restic unlock removes stale "
                "locks)"
            )
        elif kind == "full":
            message = f"the repository's storage is full: {match.group(0)}"
        elif kind == "unreachable":
            detail = next((line for line in lines if pattern.search(line)), last)
            message = f"unreachable: {detail.strip()}"
        return ResticError(f"{name}: {message}", kind=kind, stderr=text)
    return ResticError(f"{name}: restic {command} failed: {last}", stderr=text)


def _tail(buffer, data):
    buffer.extend(data)
    if len(buffer) > STDERR_LIMIT:
        del buffer[: len(buffer) - STDERR_LIMIT]


class Repository:
    """One restic repository and the way to open it.

    Args:
        url: restic's repository string (a path, ``sftp:...``, ``s3:...``).
        password: the repository password (kept in memory only).
        name: how messages name it ("local tier of demo").
        environ: other variables restic needs (S3 credentials).
        options: restic ``-o`` options (``sftp.command``).
    """

    def __init__(self, url, password, *, name, environ=None, options=None):
        if not password:
            raise ResticError(f"{name}: no repository password", kind="password")
        self.url = url
        self.name = name
        self._password = password
        self._environ = dict(environ or {})
        self.options = dict(options or {})

    def __repr__(self):
        return f"<Repository {self.name}: {self.url}>"

    # -- running restic ------------------------------------------------------

    def environ(self):
        """Return the process environment of a restic run."""
        cache = Path(settings.BASE_DIR) / ".state" / "restic-cache"
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "RESTIC_CACHE_DIR": str(cache),
            "RESTIC_PASSWORD": self._password,
            **self._environ,
        }

    def argv(self, *args):
        """Return the argument list of ``restic <args>`` on this repository."""
        options = [item for k, v in self.options.items() for item in ("-o", f"{k}={v}")]
        return [RESTIC, "--repo", self.url, *options, *args]

    def run(self, *args, parse_json=False, timeout=3600, extra_environ=None):
        """Run ``restic <args>``; return its stdout (parsed with ``parse_json``).

        Raises ResticError naming the repository when restic fails.
        """
        done = subprocess.run(
            self.argv(*args),
            env={**self.environ(), **(extra_environ or {})},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise explain(self.name, args[0], done.stderr.decode("utf-8", "replace"))
        out = done.stdout.decode("utf-8", "replace")
        if parse_json:
            return json.loads(out) if out.strip() else None
        return out

    @property
    def local_path(self):
        """The folder of a repository on this machine's filesystem, or None."""
        path = Path(self.url)
        return path if path.is_absolute() else None

    def password_input(self):
        """Return the password as restic reads it from its standard input.

        For restic run elsewhere (in a helper container): standard input is
        in no ``docker inspect``, command line or process environment.
        """
        return self._password.encode() + b"\n"

    # -- the repository ----------------------------------------------------

    def exists(self):
        """Return whether the repository is there (and opens with the password)."""
        try:
            self.run("cat", "config", timeout=120)
        except ResticError as exc:
            if exc.kind == "missing":
                return False
            raise
        return True

    def ensure(self):
        """Create the repository (format 2: compressed) unless it exists.

        Return whether it was created.
        """
        if self.exists():
            return False
        self.run("init", "--repository-version", "2", timeout=300)
        return True

    def unlock(self):
        """Remove stale locks (restic's own rule: a dead process on this host,
        or older than 30 minutes)."""
        self.run("unlock", timeout=120)

    def locks(self, *, timeout=15):
        """Return ``[(lock id, lock)]``: the locks in the repository now.

        A lock is restic's JSON (``hostname``, ``pid``, ``time``,
        ``exclusive``). One removed while it is read (its restic ended) is
        left out: restic retries a missing file for most of a minute, so
        each read gets ``timeout`` seconds.
        """
        found = []
        for lock_id in self.run("list", "locks", "--no-lock", timeout=120).split():
            try:
                lock = self.run(
                    "cat",
                    "lock",
                    lock_id,
                    "--no-lock",
                    parse_json=True,
                    timeout=timeout,
                )
            except (ResticError, subprocess.TimeoutExpired):
                continue
            if isinstance(lock, dict):
                found.append((lock_id, lock))
        return found

    def remove_lock(self, lock_id):
        """Remove one lock of a repository on this machine's filesystem.

        restic's own ``unlock`` removes only locks of dead processes of the
        machine it runs on (or older than 30 minutes); this removes one the
        caller knows is stale.
        """
        if self.local_path is None:
            raise ResticError(
                f"{self.name}: single locks are removed only in repositories on "
                "this machine's filesystem"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", lock_id):
            raise ResticError(f"{self.name}: {lock_id!r} is no lock id")
        (self.local_path / "locks" / lock_id).unlink(missing_ok=True)

    def snapshots(self, *tags):
        """Return the snapshots (restic's JSON), those with every tag given."""
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        return self.run(*args, parse_json=True, timeout=300) or []

    def find_snapshot(self, snapshot_id):
        """Return the snapshot (restic's JSON) whose id is or starts with
        ``snapshot_id``, or None when there is none (or the prefix is
        ambiguous)."""
        if not re.fullmatch(r"[0-9a-f]{4,64}", snapshot_id or ""):
            return None
        found = self.run("snapshots", "--json", snapshot_id, parse_json=True) or []
        return found[0] if len(found) == 1 else None

    def ls(self, snapshot_id, path="/"):
        """Return the nodes (restic's JSON: name, type, path, size, ...) under
        ``path`` in a snapshot."""
        out = self.run("ls", "--json", snapshot_id, path, timeout=600)
        nodes = []
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("struct_type") == "node":
                nodes.append(item)
        return nodes

    def file_size(self, snapshot_id, path):
        """Return the size of the file ``path`` in a snapshot (ResticError
        when the snapshot holds no such file)."""
        for node in self.ls(snapshot_id, path):
            if node.get("path") == path and node.get("type") == "file":
                return int(node.get("size") or 0)
        raise ResticError(
            f"{self.name}: snapshot {snapshot_id[:8]} holds no file {path}",
            kind="missing",
        )

    def stats(self, snapshot_id, mode="restore-size"):
        """Return restic's stats of one snapshot."""
        return self.run("stats", "--json", "--mode", mode, snapshot_id, parse_json=True)

    # -- data in -------------------------------------------------------------

    def backup_stream(
        self, chunks, *, filename, tags, host, progress=None, parent=None, force=False
    ):
        """Back up the bytes of ``chunks`` as the file ``filename``.

        The stream goes straight into ``restic backup --stdin``: nothing is
        held but the chunk being written. ``progress(bytes_done)`` is called
        with restic's progress. Returns restic's summary (``snapshot_id``,
        ``data_added``, ``total_bytes_processed``, ...).

        If the producer raises (a cancel, a failed dump), restic is killed
        before it writes a snapshot and the exception propagates.
        """
        args = ["backup", "--stdin", "--stdin-filename", filename, "--json"]
        args += ["--host", host]
        for tag in tags:
            args += ["--tag", tag]
        if parent:
            args += ["--parent", parent]
        if force:
            args.append("--force")
        process = subprocess.Popen(
            self.argv(*args),
            env=self.environ(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        summary, stderr = {}, bytearray()
        readers = [
            threading.Thread(
                target=_read_messages,
                args=(process.stdout, summary, progress),
                daemon=True,
            ),
            threading.Thread(
                target=_read_stderr, args=(process.stderr, stderr), daemon=True
            ),
        ]
        for reader in readers:
            reader.start()
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                try:
                    process.stdin.write(chunk)
                except BrokenPipeError:
                    break  # restic ended; its exit code says why
            process.stdin.close()
            process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            for reader in readers:
                reader.join(timeout=30)
        if process.returncode != 0:
            raise explain(self.name, "backup", stderr.decode("utf-8", "replace"))
        if not summary.get("snapshot_id"):
            raise ResticError(f"{self.name}: restic backup reported no snapshot")
        return summary

    # -- data out ------------------------------------------------------------

    @contextmanager
    def dump(self, snapshot_id, path="/", *, archive=None, chunk=PIPE_CHUNK):
        """Yield an iterator over the bytes of ``path`` in a snapshot.

        ``archive`` ("tar") dumps a folder (or ``/``, the whole snapshot) as
        one archive. restic is stopped when the block ends early.
        """
        args = ["dump"]
        if archive:
            args += ["--archive", archive]
        args += [snapshot_id, path]
        process = subprocess.Popen(
            self.argv(*args),
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stderr = bytearray()
        reader = threading.Thread(
            target=_read_stderr, args=(process.stderr, stderr), daemon=True
        )
        reader.start()

        def data():
            while True:
                block = process.stdout.read(chunk)
                if not block:
                    return
                yield block

        try:
            yield data()
            process.stdout.close()
            process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            reader.join(timeout=30)
        if process.returncode != 0:
            raise explain(self.name, "dump", stderr.decode("utf-8", "replace"))

    # -- between repositories, and upkeep --------------------------------------

    def copy_from(self, source, snapshot_ids):
        """Copy snapshots from the ``source`` repository into this one."""
        options = {**source.options, **self.options}
        argv = [RESTIC, "--repo", self.url]
        argv += [item for k, v in options.items() for item in ("-o", f"{k}={v}")]
        argv += ["copy", "--from-repo", source.url, *snapshot_ids]
        environ = {
            **source.environ(),
            **self.environ(),
            "RESTIC_FROM_PASSWORD": source._password,
        }
        done = subprocess.run(argv, env=environ, capture_output=True, check=False)
        if done.returncode != 0:
            raise explain(self.name, "copy", done.stderr.decode("utf-8", "replace"))
        return done.stdout.decode("utf-8", "replace")

    def forget(self, *, keep, tags=(), dry_run=False, prune=False):
        """Apply ``keep`` (``{"daily": 7, ...}``); return restic's JSON groups.

        With ``dry_run`` nothing is removed: the result lists what would go.
        """
        # One group per piece of data: host (the environment) and path (the
        # service's dump file or volumes); the tags hold a record id each.
        args = ["forget", "--json", "--group-by", "host,paths"]
        for key, value in keep.items():
            args += [f"--keep-{key}", str(value)]
        if tags:
            args += ["--tag", ",".join(tags)]
        if dry_run:
            args.append("--dry-run")
        groups = self.run(*args, parse_json=True, timeout=6 * 3600) or []
        if prune and not dry_run:
            # Separately: with --prune, forget mixes prune's text into its JSON.
            self.run("prune", timeout=6 * 3600)
        return groups

    def check(self, *, read_data_subset=None, timeout=6 * 3600):
        """Run ``restic check``; return a :class:`CheckReport`.

        ``read_data_subset`` (``"n/N"``) also reads and verifies the packs of
        the n-th of N groups (a pack is in group ``first byte of its id % N
        + 1``: :func:`pack_group`). Damage is reported, not raised; a
        failure to open the repository (password, lock, network) raises
        ResticError.
        """
        args = ["check"]
        if read_data_subset:
            args.append(f"--read-data-subset={read_data_subset}")
        done = subprocess.run(
            self.argv(*args),
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        output = done.stdout.decode("utf-8", "replace")
        report = CheckReport(ok=done.returncode == 0, output=output)
        for match in _PACK_ERROR.finditer(output):
            report.damaged_packs.add((match.group(1) or match.group(2)).lower())
        for match in _PACK_LOAD_ERROR.finditer(output):
            report.damaged_pack_prefixes.add(match.group(1).lower())
        progress = _READ_PROGRESS.findall(output)
        if read_data_subset and progress:
            report.read_packs = int(progress[-1][1])
        if not report.ok and not (
            report.damaged_packs
            or report.damaged_pack_prefixes
            or "repository contains errors" in output
        ):
            # restic did not get to check anything: say why, as every run does.
            raise explain(self.name, "check", output)
        return report

    def packs(self):
        """Return {pack id: :class:`PackInfo`} from the repository's index.

        Reads every index file (``restic cat index``); the sizes are those of
        the blobs the index places in each pack.
        """
        packs = {}
        for index_id in self.run("list", "index", timeout=600).split():
            index = self.run("cat", "index", index_id, parse_json=True, timeout=600)
            for pack in (index or {}).get("packs") or []:
                blobs = pack.get("blobs") or []
                size = max((b["offset"] + b["length"] for b in blobs), default=0)
                trees = tuple(b["id"] for b in blobs if b.get("type") == "tree")
                packs[pack["id"]] = PackInfo(
                    id=pack["id"],
                    size=size,
                    data_blobs=len(blobs) - len(trees),
                    tree_blobs=trees,
                )
        return packs

    def snapshots_using(self, pack_ids, packs=None):
        """Return the ids of the snapshots that need any of ``pack_ids``.

        A snapshot needs a pack when a file's data or one of its trees (its
        root tree included) is stored there. ``packs`` is :meth:`packs`'s
        answer, when already read.
        """
        pack_ids = set(pack_ids)
        if not pack_ids:
            return set()
        packs = packs if packs is not None else self.packs()
        used = set()
        data_packs = [p for p in pack_ids if p not in packs or packs[p].data_blobs]
        if data_packs:
            found = self.run("find", "--json", "--pack", *data_packs, parse_json=True)
            used.update(_found_snapshots(found))
        trees = {t for p in pack_ids if p in packs for t in packs[p].tree_blobs}
        if trees:
            for snapshot in self.snapshots():
                if snapshot.get("tree") in trees:
                    used.add(snapshot["id"])
            found = self.run(
                "find", "--json", "--tree", *sorted(trees), parse_json=True
            )
            used.update(_found_snapshots(found))
        return used


def pack_group(pack_id, groups):
    """Return the group (1..groups) of ``pack_id`` in ``--read-data-subset
    n/groups``: restic's rule, the first byte of the id modulo the count."""
    return int(pack_id[:2], 16) % groups + 1


def _found_snapshots(found):
    """Return the snapshot ids in ``restic find --json``'s answer."""
    snapshots = set()
    for item in found or []:
        if "snapshot" in item:
            snapshots.add(item["snapshot"])
        for match in item.get("matches") or []:
            if "snapshot" in match:
                snapshots.add(match["snapshot"])
    return snapshots


# Hot path: one iteration per restic JSON message (a status line a second).
def _read_messages(stream, summary, progress):
    for raw in stream:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        kind = message.get("message_type")
        if kind == "summary":
            summary.update(message)
        elif kind == "status" and progress is not None:
            progress(message.get("bytes_done") or 0)


def _read_stderr(stream, buffer):
    for raw in iter(lambda: stream.read(65536), b""):
        _tail(buffer, raw)

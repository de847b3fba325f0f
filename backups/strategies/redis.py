"""Redis: the RDB snapshot or the append-only files, streamed into restic.

``rdb``
    ``BGSAVE SCHEDULE`` in the container (scheduled after an AOF rewrite
    that is running), then wait until the save counter of ``INFO
    persistence`` (``rdb_saves``; ``LASTSAVE`` on servers without it) has
    moved and no save is in progress, check ``rdb_last_bgsave_status``, and
    stream the file (``cat <dir>/<dbfilename>`` in the container) into
    restic as ``dump.rdb``. A save that was already running when the backup
    began is waited for and followed by one of its own, so the file is not
    older than the manifest. With ``redis_settings.save_before_backup:
    false`` the file on disk is taken as it is.
``aof``
    ``BGREWRITEAOF``, wait until the rewrite counter (``aof_rewrites``) has
    moved and nothing is rewriting, then the append-only directory
    (``appendonlydir/`` in Redis 7: base, increments and manifest) streamed
    as a tar (``tar`` in the container) into restic as
    ``appendonlydir.tar``. A server running without ``appendonly`` has no
    such files: the backup fails and says so. A rewrite that starts while
    the directory is read fails the backup (files were replaced under tar).

The manifest: the keys of every database (``INFO keyspace``), their total,
the server version and its memory. ``INFO`` is parsed field by field
(``async_loading:0`` is not ``loading:0``). A password
(``redis_settings.password``, a ``${VAR}`` reference resolved from the
environment's variables) reaches ``redis-cli`` as ``REDISCLI_AUTH`` in the
exec's environment, never on its command line.
"""

import time

from stacks.secrets import MissingSecret, environ_for, resolve, sources_hint

from ..tiers import BackupError
from .base import Strategy, checked

__all__ = ["RedisReplyError", "RedisStrategy", "parse_info", "parse_keyspace"]

# Seconds between two looks at INFO while a save or a rewrite runs.
POLL = 0.2
# How long a save or rewrite may take (redis_settings.save_timeout).
DEFAULT_TIMEOUT = 3600
_ERROR_REPLIES = ("ERR", "NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "MISCONF")


def parse_info(text):
    """Return ``{field: value}`` of ``INFO`` output (``# Section`` lines skipped).

    Fields are matched whole: ``loading`` and ``async_loading`` are two.
    """
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


def parse_keyspace(fields):
    """Return ``{"db0": keys, ...}`` from the fields of ``INFO keyspace``."""
    databases = {}
    for key, value in fields.items():
        if key.startswith("db") and key[2:].isdigit():
            stats = dict(
                item.partition("=")[::2] for item in value.split(",") if "=" in item
            )
            databases[key] = int(stats.get("keys", 0))
    return dict(sorted(databases.items(), key=lambda item: int(item[0][2:])))


class RedisStrategy(Strategy):
    """The RDB snapshot (``rdb``) or the append-only files (``aof``) of Redis."""

    def __init__(self, context, name):
        super().__init__(context)
        self.name = name
        self.options = self.settings("redis_settings")
        self.timeout = float(self.options.get("save_timeout") or DEFAULT_TIMEOUT)
        self._environ = self._auth()
        self.filename = "dump.rdb" if name == "rdb" else "appendonlydir.tar"

    @property
    def service(self):
        return self.context.service.name

    def _auth(self):
        reference = self.options.get("password")
        if not reference:
            return None
        environment = self.context.environment
        try:
            password = resolve(
                str(reference), environ_for(environment), service=self.service
            )
        except MissingSecret as exc:
            raise BackupError(
                f"The Redis password of {self.service}: {exc} "
                f"({sources_hint(environment)})."
            ) from None
        return {"REDISCLI_AUTH": password}

    # -- talking to the server ---------------------------------------------

    def cli(self, *args):
        """Run ``redis-cli <args>``; return its reply, or fail on an error reply."""
        reply = self.exec_text(["redis-cli", *args], environment=self._environ)
        # redis-cli exits 0 after an error reply when its output is no terminal.
        if reply.startswith(_ERROR_REPLIES):
            raise RedisReplyError(
                f"redis-cli {' '.join(args)} in {self.service}: {reply.strip()}"
            )
        return reply.strip()

    def info(self, section):
        return parse_info(self.cli("INFO", section))

    def config(self, name):
        """Return the value of ``CONFIG GET name`` ("" when not set)."""
        lines = self.cli("CONFIG", "GET", name).splitlines()
        return lines[1] if len(lines) > 1 else ""

    # -- manifest -------------------------------------------------------------

    def manifest(self):
        server = self.info("server")
        memory = self.info("memory")
        databases = parse_keyspace(self.info("keyspace"))
        return {
            "engine": "redis",
            "redis_version": server.get("redis_version", ""),
            "databases": databases,
            "keys": sum(databases.values()),
            "used_memory": int(memory.get("used_memory") or 0),
            "file": self.filename,
        }

    # -- the data -------------------------------------------------------------

    def backup(self, repository, *, tags, host):
        if self.name == "aof":
            return self._backup_aof(repository, tags=tags, host=host)
        return self._backup_rdb(repository, tags=tags, host=host)

    def _backup_rdb(self, repository, *, tags, host):
        context = self.context
        folder, name = self.config("dir"), self.config("dbfilename") or "dump.rdb"
        path = f"{folder.rstrip('/')}/{name}"
        if self.options.get("save_before_backup", True) in (False, "false"):
            context.log.info(f"Taking {path} as it is (save_before_backup: false)")
        else:
            self.save()
        stream = self.stream_from(["cat", "--", path])
        with stream:
            return repository.backup_stream(
                checked(stream, f"reading {path} in {self.service}", context),
                filename=self.filename,
                tags=tags,
                host=host,
            )

    def save(self):
        """Make Redis write a fresh RDB file; return when it is on disk."""
        log = self.context.log
        started = time.monotonic()
        before = self.info("persistence")
        if before.get("loading") == "1":
            raise BackupError(
                f"Redis in {self.service} is still loading its data; back it up "
                "when it has started."
            )
        counter = "rdb_saves" if "rdb_saves" in before else None
        last = before.get(counter) if counter else self.cli("LASTSAVE")
        if counter is None:
            # LASTSAVE counts seconds: a save in the same second would not show.
            self._next_second(int(last))
        while True:
            try:
                reply = self.cli("BGSAVE", "SCHEDULE")
            except RedisReplyError as exc:
                if "already in progress" not in str(exc):
                    raise
                # Someone else's save, begun before this backup: wait for it,
                # then take one of this backup's own.
                log.info(f"{self.service}: waiting for a save already running")
                self._wait(lambda f: f.get("rdb_bgsave_in_progress") == "0", started)
                before = self.info("persistence")
                last = before.get(counter) if counter else self.cli("LASTSAVE")
                continue
            break
        log.info(f"{self.service}: {reply}")

        def saved(fields):
            now = fields.get(counter) if counter else self.cli("LASTSAVE")
            return now != last and fields.get("rdb_bgsave_in_progress") == "0"

        fields = self._wait(saved, started)
        if fields.get("rdb_last_bgsave_status") != "ok":
            raise BackupError(
                f"BGSAVE in {self.service} failed (rdb_last_bgsave_status:"
                f"{fields.get('rdb_last_bgsave_status')}); the server's log says why "
                "(a full disk, the permissions of its dir)."
            )
        log.info(
            f"{self.service}: saved in {time.monotonic() - started:.1f}s "
            f"({fields.get('rdb_last_bgsave_time_sec', '?')}s by Redis)"
        )

    def _backup_aof(self, repository, *, tags, host):
        context = self.context
        if self.config("appendonly") != "yes":
            raise BackupError(
                f"Redis in {self.service} runs without appendonly (CONFIG GET "
                "appendonly: no), so it has no append-only files to back up; use "
                "the rdb strategy, or run redis-server with --appendonly yes."
            )
        folder = self.config("dir").rstrip("/") or "/"
        # Redis 7 keeps a directory; older servers one file.
        name = self.config("appenddirname") or self.config("appendfilename")
        rewrites = self.rewrite()
        stream = self.stream_from(["tar", "-C", folder, "-cf", "-", "--", name])

        def data():
            yield from checked(
                stream, f"tar of {folder}/{name} in {self.service}", context
            )
            after = self.info("persistence")
            if (
                after.get("aof_rewrites") != rewrites
                or after.get("aof_rewrite_in_progress") != "0"
            ):
                raise BackupError(
                    f"Redis in {self.service} rewrote its append-only files while "
                    "they were read; run the backup again."
                )

        with stream:
            return repository.backup_stream(
                data(), filename=self.filename, tags=tags, host=host
            )

    def rewrite(self):
        """Run BGREWRITEAOF and wait for it; return the rewrite counter after."""
        log = self.context.log
        started = time.monotonic()
        before = self.info("persistence").get("aof_rewrites")
        while True:
            try:
                reply = self.cli("BGREWRITEAOF")
            except RedisReplyError as exc:
                if "already in progress" not in str(exc):
                    raise
                self._wait(lambda f: f.get("aof_rewrite_in_progress") == "0", started)
                before = self.info("persistence").get("aof_rewrites")
                continue
            break
        log.info(f"{self.service}: {reply}")

        def rewritten(fields):
            idle = (
                fields.get("aof_rewrite_in_progress") == "0"
                and fields.get("aof_rewrite_scheduled") == "0"
            )
            moved = before is None or fields.get("aof_rewrites") != before
            return idle and moved

        fields = self._wait(rewritten, started)
        if fields.get("aof_last_bgrewrite_status") != "ok":
            raise BackupError(
                f"BGREWRITEAOF in {self.service} failed (aof_last_bgrewrite_status:"
                f"{fields.get('aof_last_bgrewrite_status')}); the server's log says "
                "why."
            )
        return fields.get("aof_rewrites")

    def _wait(self, done, started):
        """Poll ``INFO persistence`` until ``done(fields)``; return the fields."""
        while True:
            self.context.check_cancel()
            fields = self.info("persistence")
            if done(fields):
                return fields
            if time.monotonic() - started > self.timeout:
                raise BackupError(
                    f"Redis in {self.service} did not finish saving within "
                    f"{self.timeout:.0f}s (redis_settings.save_timeout)."
                )
            time.sleep(POLL)

    def _next_second(self, last):
        seconds = int(self.cli("TIME").split()[0])
        if seconds <= last:
            time.sleep(last - seconds + 1.05)


class RedisReplyError(BackupError):
    """Redis answered a command with an error reply."""

"""The cleaners: measure and delete one item's data, next to the data.

Every cleaner has two steps, :func:`measure` (what is older than the
cutoff and what stays; reads only) and :func:`remove` (delete what the
measure found old, in batches). A dry run calls :func:`measure` only.

==============  ============================================================
kind            how
==============  ============================================================
rows            ``psql`` in the service's container: counts, bytes
                (``pg_column_size``), oldest and newest by the date column;
                deletes about ``batch_size`` rows per statement, a range of
                pages at a time (its own transaction: row locks are held for
                one batch only, the table is never locked)
keys            one Lua script per ``SCAN`` step in the Redis container: a
                key's age is its idle time (``OBJECT IDLETIME``), its bytes
                ``MEMORY USAGE``; old keys are ``UNLINK``\\ ed, younger keys
                without a TTL get one for the rest of their days (the
                seed's ``EXPIRE``)
files           ``find`` in a helper container with the volume mounted (not
                file by file over the API): ``-mmin +<days * 1440>``, the
                item's path, name patterns, and the paths and patterns of
                more specific items left out; GNU find measures and deletes
                in its walk (``-printf``, ``-delete``), BusyBox's through
                ``stat`` and ``rm`` per batch of names
collections     Qdrant's API (``GET /collections``, ``DELETE
                /collections/{name}``) from a helper on the service's
                network; a collection's age is the time since the portal
                first saw it (:class:`~retention.models.CollectionSighting`:
                Qdrant reports no creation time)
indices         Elasticsearch's ``_cat/indices`` (creation dates, store
                sizes) and ``DELETE /<index>``, the same way
objects         S3 ``ListObjectsV2`` by ``LastModified`` and
                ``DeleteObject``, with the backups' MinIO client (boto3)
snapshots       the service's backup records older than its
                ``backup_retention_days`` (the newest of each tier and
                strategy always stays, tapes are left to their rotation):
                ``restic forget`` and ``prune`` in each tier's repository;
                the records are marked pruned
==============  ============================================================
"""

import fnmatch
import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import botocore.exceptions
from django.utils import timezone

from backups.models import BackupRecord, BackupStrategy
from backups.restic import ResticError
from backups.strategies import BackupContext
from backups.strategies.base import checked
from backups.strategies.minio import MinioStrategy
from backups.tiers import BackupError, repository
from backups.volumes import clear_stale_locks
from stacks import engine
from stacks.models import Service
from stacks.secrets import MissingSecret, environ_for, resolve

from .choices import ItemKind
from .models import CollectionSighting, RetentionPolicy

__all__ = [
    "CleanupError",
    "Context",
    "NotThere",
    "RowsArchive",
    "measure",
    "remove",
    "s3_client",
]

DEFAULT_BATCH = 5000
KEY_SCAN_COUNT = 1000
DATA = "/data"


class CleanupError(Exception):
    """A cleaner could not measure or delete; the message says why."""


class NotThere(CleanupError):
    """The item's data is not there to clean: its service is not running,
    its volume does not exist yet. The item is skipped, not failed."""


@dataclass
class Context:
    """What a cleaner needs: the environment, its engine, the operation's log."""

    environment: object
    client: object
    log: object
    check_cancel: object
    owner: str = ""

    def container(self, service_name):
        """Return the id of ``service_name``'s running container."""
        service = Service.objects.select_related("stack").filter(name=service_name)
        service = service.first()
        if service is None:
            raise CleanupError(f"No service {service_name} in stacks.yaml.")
        states = engine.service_states(
            self.client, self.environment.project_name(service.stack)
        )
        state = states.get(service_name)
        if state is None or state.state != "running":
            raise NotThere(
                f"{service_name} has no running container in "
                f"{self.environment.name}; start it to clean it up."
            )
        return state.id

    def volume(self, key):
        """Return the Docker name of the environment's volume ``key``."""
        for volume in engine.list_volumes(
            self.client, environment=self.environment.name
        ):
            labels = volume.get("Labels") or {}
            if labels.get(engine.labels.COMPOSE_VOLUME) == key:
                return volume["Name"]
        raise NotThere(
            f"Volume {key} does not exist in {self.environment.name} (start the "
            "service that mounts it first)."
        )


def _stamp(seconds):
    if seconds in (None, "", -1):
        return None
    return datetime.fromtimestamp(float(seconds), tz=UTC).isoformat()


def measure(ctx, item, cutoff):
    """Return what ``item`` holds older than ``cutoff`` and what stays."""
    handler = _CLEANERS.get(item.kind)
    if handler is None:
        return {"skipped": f"cleaning {item.kind} is not built yet"}
    return handler[0](ctx, item, cutoff)


def remove(ctx, item, cutoff, measured):
    """Delete ``item``'s data older than ``cutoff``; return removed and freed."""
    return _CLEANERS[item.kind][1](ctx, item, cutoff, measured)


# -- rows (PostgreSQL) --------------------------------------------------------


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


class _Postgres:
    def __init__(self, ctx, item):
        self.ctx = ctx
        self.container = ctx.container(item.service)
        env = {}
        attrs = ctx.client.api.inspect_container(self.container)
        for entry in attrs["Config"].get("Env") or []:
            key, _, value = entry.partition("=")
            env[key] = value
        self.user = env.get("POSTGRES_USER") or "postgres"
        settings = item.settings
        self.database = settings.get("database") or env.get("POSTGRES_DB") or self.user
        schema = settings.get("schema") or "public"
        table = settings.get("table") or item.name
        self.table = f"{_quote(schema)}.{_quote(table)}"
        self.regclass = f"{schema}.{table}"
        self.column = _quote(settings.get("date_column") or "created_at")

    def psql(self, sql):
        result = engine.exec_run(
            self.ctx.client,
            self.container,
            [
                "psql", "-At", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-U", self.user, "-d", self.database, "-c", sql,
            ],
        )  # fmt: skip
        if not result.ok:
            raise CleanupError(f"psql exited with {result.exit_code}: "
                               f"{result.stderr_text(500)}")  # fmt: skip
        return result.stdout.decode("utf-8", "replace").strip()


def _cutoff_sql(cutoff):
    return f"'{cutoff.isoformat()}'::timestamptz"


def _rows_measure(ctx, item, cutoff):
    pg = _Postgres(ctx, item)
    exists = pg.psql(f"SELECT to_regclass('{pg.regclass}') IS NOT NULL")
    if exists != "t":
        return {"skipped": f"no table {pg.regclass} in database {pg.database}"}
    old = _cutoff_sql(cutoff)
    line = pg.psql(
        f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0), "
        f"extract(epoch from min(t.{pg.column})), "
        f"extract(epoch from max(t.{pg.column})) "
        f"FROM {pg.table} t WHERE t.{pg.column} < {old}"
    )
    count, size, oldest, newest = (line.split("|") + ["", "", "", ""])[:4]
    kept = pg.psql(
        f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {pg.table} t "
        f"WHERE NOT (t.{pg.column} < {old}) OR t.{pg.column} IS NULL"
    ).split("|")
    return {
        "matched": int(count),
        "matched_bytes": int(size),
        "oldest": _stamp(oldest),
        "newest": _stamp(newest),
        "kept": int(kept[0]),
        "kept_bytes": int(kept[1]),
        "bytes_estimated": True,
    }


def _rows_remove(ctx, item, cutoff, measured):
    """Delete the old rows a few pages at a time (a TID range scan reads
    only those pages), each batch its own statement and transaction: row
    locks are held for one batch, the table is never locked, and no batch
    rescans what earlier ones left behind. A last pass catches rows that
    moved past the pages counted at the start."""
    pg = _Postgres(ctx, item)
    batch = int(item.settings.get("batch_size") or DEFAULT_BATCH)
    old = _cutoff_sql(cutoff)
    pages = int(
        pg.psql(
            f"SELECT pg_relation_size('{pg.regclass}') / "
            "current_setting('block_size')::int"
        )
    )
    rows = (getattr(measured, "matched", 0) or 0) + (getattr(measured, "kept", 0) or 0)
    step = max(1, batch * max(pages, 1) // max(rows, 1))
    removed = freed = batches = 0
    longest = 0.0
    began = time.monotonic()

    def run(where):
        nonlocal removed, freed, batches, longest
        ctx.check_cancel()
        started = time.monotonic()
        line = pg.psql(
            f"WITH doomed AS (DELETE FROM {pg.table} t WHERE {where} "
            f"RETURNING pg_column_size(t.*) AS size) "
            f"SELECT count(*), coalesce(sum(size), 0) FROM doomed"
        )
        longest = max(longest, time.monotonic() - started)
        count, size = (int(v) for v in line.split("|"))
        removed += count
        freed += size
        batches += 1
        return count

    for first in range(0, pages, step):
        run(
            f"t.ctid >= '({first},0)'::tid AND t.ctid < '({first + step},0)'::tid "
            f"AND t.{pg.column} < {old}"
        )
    while (
        run(
            f"t.ctid = ANY(ARRAY(SELECT ctid FROM {pg.table} WHERE {pg.column} < "
            f"{old} LIMIT {batch}))"
        )
        >= batch
    ):
        pass
    if item.settings.get("vacuum"):
        # The volume's vacuum_and_analyze; the rows are gone either way.
        try:
            pg.psql(f"VACUUM ANALYZE {pg.table}")
        except CleanupError as exc:
            ctx.log.warning(f"{item.key}: VACUUM ANALYZE failed: {exc}")
    ctx.log.info(
        f"{item.key}: {removed} row(s) deleted in {batches} batch(es) of "
        f"{step} page(s) (about {batch} rows); longest batch {longest:.3f} s"
    )
    return {
        "removed": removed,
        "freed_bytes": freed,
        "detail": {
            "batches": batches,
            "pages_per_batch": step,
            "longest_batch_s": round(longest, 4),
            "delete_s": round(time.monotonic() - began, 3),
        },
    }


class RowsArchive:
    """The old rows of a table as CSV, for ``archive_then_delete``: the
    backups' snapshot step reads :meth:`manifest`, then :meth:`backup`
    streams ``COPY ... TO STDOUT`` from the container into restic."""

    def __init__(self, ctx, item, record, check_cancel):
        self.pg = _Postgres(ctx, item)
        self.ctx, self.item, self.record = ctx, item, record
        self.check_cancel = check_cancel
        self.progress = None
        self.filename = f"{item.settings.get('table') or item.name}.csv"

    def manifest(self):
        return {
            "engine": "postgresql",
            "archive": self.pg.regclass,
            "database": self.pg.database,
            "rows": self.record.matched,
            "before": self.record.cutoff.isoformat(),
        }

    def backup(self, repository, *, tags, host):
        pg = self.pg
        sql = (
            f"COPY (SELECT * FROM {pg.table} WHERE {pg.column} < "
            f"{_cutoff_sql(self.record.cutoff)}) TO STDOUT WITH (FORMAT csv, HEADER)"
        )
        stream = engine.exec_stream(
            self.ctx.client,
            pg.container,
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d",
             pg.database, "-c", sql],
        )  # fmt: skip
        with stream:
            return repository.backup_stream(
                checked(stream, f"COPY of {pg.regclass}", self),
                filename=self.filename,
                tags=tags,
                host=host,
            )


# -- keys (Redis) -------------------------------------------------------------

# KEYS none, ARGV: cursor, pattern, count, seconds, act ("1": delete/expire).
_KEYS_SCRIPT = """
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local limit = tonumber(ARGV[4])
local act = ARGV[5] == '1'
local old, old_bytes, young, young_bytes = 0, 0, 0, 0
local oldest, newest, expiring = -1, -1, 0
for _, key in ipairs(reply[2]) do
  local idle = redis.call('OBJECT', 'IDLETIME', key)
  local size = redis.call('MEMORY', 'USAGE', key) or 0
  if idle > limit then
    old = old + 1
    old_bytes = old_bytes + size
    if oldest < idle then oldest = idle end
    if newest < 0 or newest > idle then newest = idle end
    if act then redis.call('UNLINK', key) end
  else
    young = young + 1
    young_bytes = young_bytes + size
    if act and redis.call('TTL', key) == -1 then
      redis.call('EXPIRE', key, limit - idle)
      expiring = expiring + 1
    end
  end
end
return {reply[1], old, old_bytes, young, young_bytes, oldest, newest, expiring}
"""


def _redis_environ(item):
    policy = RetentionPolicy.objects.filter(service=item.service).first()
    reference = (policy.settings or {}).get("password") if policy else None
    return reference


def _keys_scan(ctx, item, cutoff, *, act):
    container = ctx.container(item.service)
    seconds = max(int((datetime.now(UTC) - cutoff).total_seconds()), 0)
    database = str(item.settings.get("database") or 0)
    environ = {}
    reference = _redis_environ(item)
    if reference:
        try:
            environ["REDISCLI_AUTH"] = resolve(
                reference, environ_for(ctx.environment), what="the Redis password"
            )
        except MissingSecret as exc:
            raise CleanupError(f"The Redis password of {item.service}: {exc}")
    totals = dict.fromkeys(("old", "old_bytes", "young", "young_bytes", "expiring"), 0)
    oldest = newest = -1
    cursor = "0"
    now = time.time()
    while True:
        ctx.check_cancel()
        result = engine.exec_run(
            ctx.client,
            container,
            [
                "redis-cli", "-n", database, "--no-auth-warning", "EVAL",
                _KEYS_SCRIPT, "0", cursor, item.pattern, str(KEY_SCAN_COUNT),
                str(seconds), "1" if act else "0",
            ],
            environment=environ or None,
        )  # fmt: skip
        text = result.stdout.decode("utf-8", "replace").strip()
        if not result.ok or text.startswith(("ERR", "(error)", "NOAUTH", "WRONGPASS")):
            raise CleanupError(
                f"redis-cli in {item.service}: {text or result.stderr_text(300)}"
            )
        values = text.split()
        cursor = values[0]
        old, old_b, young, young_b, max_idle, min_idle, expiring = (
            int(v) for v in values[1:8]
        )
        totals["old"] += old
        totals["old_bytes"] += old_b
        totals["young"] += young
        totals["young_bytes"] += young_b
        totals["expiring"] += expiring
        if max_idle >= 0:
            oldest = max(oldest, max_idle)
            newest = min_idle if newest < 0 else min(newest, min_idle)
        if cursor == "0":
            break
    return totals, (
        _stamp(now - oldest) if oldest >= 0 else None,
        _stamp(now - newest) if newest >= 0 else None,
    )


def _keys_measure(ctx, item, cutoff):
    totals, (oldest, newest) = _keys_scan(ctx, item, cutoff, act=False)
    return {
        "matched": totals["old"],
        "matched_bytes": totals["old_bytes"],
        "oldest": oldest,
        "newest": newest,
        "kept": totals["young"],
        "kept_bytes": totals["young_bytes"],
        "bytes_estimated": True,
    }


def _keys_remove(ctx, item, cutoff, measured):
    totals, _ = _keys_scan(ctx, item, cutoff, act=True)
    if totals["expiring"]:
        ctx.log.info(
            f"{item.key}: {totals['expiring']} younger key(s) without a TTL now "
            "expire when their days are up"
        )
    return {
        "removed": totals["old"],
        "freed_bytes": totals["old_bytes"],
        "detail": {"expiring": totals["expiring"]},
    }


# -- files in a volume --------------------------------------------------------

# "$1": old|young|delete, "$2": the folder, then find's tests. No user
# string is part of the script itself. GNU find measures and deletes in its
# own walk (-printf, -delete); BusyBox find has neither: each batch of names
# is measured (stat), then removed (rm).
_FILES_SCRIPT = r"""
mode="$1"; base="$2"; shift 2
[ -d "$base" ] || { echo "0 0 -1 -1"; exit 0; }
if [ "$mode" = delete ] && find --version 2>/dev/null | grep -q GNU; then
  find "$base" "$@" -printf '%s\n' -delete |
    awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
elif [ "$mode" = delete ]; then
  find "$base" "$@" -exec sh -c 'stat -c %s "$@" && rm -f "$@"' sh {} + |
    awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
elif find --version 2>/dev/null | grep -q GNU; then
  find "$base" "$@" -printf '%T@ %s\n' | awk '
    {t = int($1); n++; b+=$2; if (min == "" || t < min) min = t; if (t > max) max = t}
    END {printf "%d %d %s %s\n", n, b, (min == "" ? -1 : min), (max == "" ? -1 : max)}'
else
  find "$base" "$@" -exec stat -c '%Y %s' {} + | awk '
    {n++; b+=$2; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1}
    END {printf "%d %d %s %s\n", n, b, (min == "" ? -1 : min), (max == "" ? -1 : max)}'
fi
"""


def _glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def find_tests(item, days, *, young=False):
    """Return the folder and find's tests after it: files only, not in the
    folders more specific items take (``! -path``: unlike ``-prune`` it
    holds with ``-delete``, which implies ``-depth``), the name patterns,
    the age."""
    base = f"{DATA}/{item.path}".rstrip("/")
    args = ["-type", "f"]
    for path in item.excludes:
        args += ["!", "-path", f"{_glob_escape(f'{DATA}/{path}')}/*"]
    if item.patterns:
        args.append("(")
        for index, pattern in enumerate(item.patterns):
            if index:
                args.append("-o")
            args += ["-name", pattern]
        args.append(")")
    for pattern in item.exclude_names:
        args += ["!", "-name", pattern]
    minutes = days * 1440
    args += ["!", "-mmin", f"+{minutes}"] if young else ["-mmin", f"+{minutes}"]
    return base, args


def _files_run(ctx, item, mode, *, young=False):
    volume = ctx.volume(item.volume)
    base, args = find_tests(item, item.days, young=young)
    code, output = engine.run_helper(
        ctx.client,
        ["sh", "-c", _FILES_SCRIPT, "retention", mode, base, *args],
        environment=ctx.environment,
        purpose="retention",
        owner=ctx.owner,
        mounts=[
            engine.MountSpec(
                type="volume",
                target=DATA,
                source=volume,
                read_only=not mode.startswith("delete"),
            )
        ],
        timeout=6 * 3600,
    )
    text = output.decode("utf-8", "replace").strip()
    if code != 0:
        raise CleanupError(f"find in volume {volume} exited with {code}: {text[-500:]}")
    return [int(v) for v in text.splitlines()[-1].split()] if text else []


def _files_measure(ctx, item, cutoff):
    old = _files_run(ctx, item, "old")
    young = _files_run(ctx, item, "young", young=True)
    return {
        "matched": old[0],
        "matched_bytes": old[1],
        "oldest": _stamp(old[2]),
        "newest": _stamp(old[3]),
        "kept": young[0],
        "kept_bytes": young[1],
    }


def _files_remove(ctx, item, cutoff, measured):
    count, size = _files_run(ctx, item, "delete")[:2]
    return {"removed": count, "freed_bytes": size}


# -- HTTP APIs next to the service (Qdrant, Elasticsearch) ----------------------

# One HTTP/1.0 request through nc: method, path, host, port, JSON body. A
# fixed script; every value is an argument (an API key comes in the exec
# environment, never on a command line).
_REQUEST_SCRIPT = (
    '{ printf "%s %s HTTP/1.0\\r\\nHost: %s\\r\\n" "$1" "$2" "$3"; '
    '[ -z "$API_KEY" ] || printf "api-key: %s\\r\\n" "$API_KEY"; '
    'printf "Content-Type: application/json\\r\\nContent-Length: %s\\r\\n\\r\\n%s" '
    '"${#5}" "$5"; } | nc "$3" "$4"'
)
_STATUS_RE = re.compile(rb"^HTTP/\d\.\d (\d{3})")


@contextmanager
def _api(ctx, item, default_port):
    """Yield ``request(method, path, body=None)`` for ``item``'s service API,
    sent from a helper container on the service's network."""
    container = ctx.container(item.service)
    attrs = ctx.client.api.inspect_container(container)
    networks = sorted((attrs["NetworkSettings"].get("Networks") or {}).keys())
    if not networks:
        raise CleanupError(f"The container of {item.service} is on no network.")
    policy = RetentionPolicy.objects.filter(service=item.service).first()
    options = (policy.settings or {}) if policy else {}
    port = str(options.get("port") or default_port)
    environ = {}
    if options.get("api_key"):
        try:
            environ["API_KEY"] = resolve(
                str(options["api_key"]), environ_for(ctx.environment)
            )
        except MissingSecret as exc:
            raise CleanupError(f"The API key of {item.service}: {exc}")
    with engine.helper_container(
        ctx.client,
        environment=ctx.environment,
        purpose="retention.api",
        owner=ctx.owner,
        command=["sleep", "3600"],
        network_mode=networks[0],
        init=True,
    ) as helper:
        ctx.client.api.start(helper)

        def request(method, path, body=None):
            data = "" if body is None else json.dumps(body)
            result = engine.exec_run(
                ctx.client,
                helper,
                ["sh", "-c", _REQUEST_SCRIPT, "sh", method, path, item.service, port,
                 data],
                environment=environ or None,
            )  # fmt: skip
            raw = result.stdout
            match = _STATUS_RE.match(raw)
            if not result.ok or match is None:
                detail = result.stderr_text(300) or raw[:300].decode("utf-8", "replace")
                raise CleanupError(
                    f"{item.service} did not answer {method} {path}: "
                    f"{detail or f'nc exited with {result.exit_code}'}"
                )
            status = int(match.group(1))
            payload = raw.partition(b"\r\n\r\n")[2]
            try:
                document = json.loads(payload) if payload.strip() else {}
            except ValueError:
                document = {}
            if status >= 300:
                raise CleanupError(
                    f"{item.service} answered {method} {path} with {status}: "
                    f"{payload[:300].decode('utf-8', 'replace')}"
                )
            return document

        yield request


def _matches(name, item):
    return fnmatch.fnmatchcase(name, item.pattern)


# -- collections (Qdrant) -----------------------------------------------------


def _collections(ctx, item, cutoff, request):
    """Return [(name, first seen, points)] of the item's collections; record
    when each was first seen (Qdrant reports no creation time)."""
    listed = (request("GET", "/collections").get("result") or {}).get(
        "collections"
    ) or []
    names = sorted(c["name"] for c in listed if _matches(c["name"], item))
    now = datetime.now(UTC)
    found = []
    for name in names:
        sighting, created = CollectionSighting.objects.get_or_create(
            environment=ctx.environment,
            service_name=item.service,
            name=name,
            defaults={"first_seen": now, "last_seen": now},
        )
        if not created:
            CollectionSighting.objects.filter(pk=sighting.pk).update(last_seen=now)
        info = request("GET", f"/collections/{quote(name, safe='')}").get("result")
        points = int((info or {}).get("points_count") or 0)
        found.append((name, sighting.first_seen, points))
    return found


def _collections_measure(ctx, item, cutoff):
    with _api(ctx, item, 6333) as request:
        found = _collections(ctx, item, cutoff, request)
    old = [f for f in found if f[1] < cutoff]
    young = [f for f in found if f[1] >= cutoff]
    return {
        "matched": len(old),
        "kept": len(young),
        "oldest": min((f[1] for f in old), default=None),
        "newest": max((f[1] for f in old), default=None),
        "detail": {
            "collections": [f[0] for f in old],
            "points": sum(f[2] for f in old),
            "age": "since the portal first saw the collection",
        },
    }


def _collections_remove(ctx, item, cutoff, measured):
    removed = []
    with _api(ctx, item, 6333) as request:
        for name, first_seen, _points in _collections(ctx, item, cutoff, request):
            if first_seen >= cutoff:
                continue
            ctx.check_cancel()
            request("DELETE", f"/collections/{quote(name, safe='')}")
            CollectionSighting.objects.filter(
                environment=ctx.environment, service_name=item.service, name=name
            ).delete()
            removed.append(name)
            ctx.log.info(f"{item.key}: collection {name} deleted")
    return {"removed": len(removed), "freed_bytes": 0, "detail": {"deleted": removed}}


# -- indices (Elasticsearch) --------------------------------------------------


def _indices(request, item):
    rows = request(
        "GET",
        f"/_cat/indices/{quote(item.pattern, safe='*,')}?format=json&bytes=b"
        "&h=index,creation.date,store.size,docs.count",
    )
    found = []
    for row in rows if isinstance(rows, list) else []:
        if row.get("index", "").startswith("."):
            continue  # system indices are Elasticsearch's own
        created = datetime.fromtimestamp(int(row["creation.date"]) / 1000, tz=UTC)
        found.append((row["index"], created, int(row.get("store.size") or 0)))
    return found


def _indices_measure(ctx, item, cutoff):
    with _api(ctx, item, 9200) as request:
        found = _indices(request, item)
    old = [f for f in found if f[1] < cutoff]
    young = [f for f in found if f[1] >= cutoff]
    return {
        "matched": len(old),
        "matched_bytes": sum(f[2] for f in old),
        "kept": len(young),
        "kept_bytes": sum(f[2] for f in young),
        "oldest": min((f[1] for f in old), default=None),
        "newest": max((f[1] for f in old), default=None),
        "detail": {"indices": [f[0] for f in old]},
    }


def _indices_remove(ctx, item, cutoff, measured):
    removed, freed = [], 0
    with _api(ctx, item, 9200) as request:
        for name, created, size in _indices(request, item):
            if created >= cutoff:
                continue
            ctx.check_cancel()
            request("DELETE", f"/{quote(name, safe='')}")
            removed.append(name)
            freed += size
    return {
        "removed": len(removed),
        "freed_bytes": freed,
        "detail": {"deleted": removed},
    }


# -- objects (S3, MinIO) ------------------------------------------------------


def s3_client(ctx, item):
    """Return (boto3 client, bucket, prefix): the backups' MinIO client."""
    service = Service.objects.select_related("stack").get(name=item.service)
    strategy = BackupStrategy.objects.filter(service=item.service).first()
    if strategy is None:
        strategy = BackupStrategy(service=item.service, method="minio", settings={})
    context = BackupContext(
        environment=ctx.environment,
        stack=service.stack,
        service=service,
        strategy=strategy,
        client=ctx.client,
        container=ctx.container(item.service),
        log=ctx.log,
        check_cancel=ctx.check_cancel,
        owner=ctx.owner,
    )
    try:
        client = MinioStrategy(context, "bucket").s3
    except BackupError as exc:
        raise CleanupError(str(exc)) from None
    bucket = item.settings.get("bucket") or item.name
    return client, bucket, item.settings.get("prefix") or ""


def _objects(client, bucket, prefix):
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except botocore.exceptions.ClientError as exc:
        code = (exc.response.get("Error") or {}).get("Code")
        if code == "NoSuchBucket":
            return
        raise CleanupError(f"Listing {bucket}/{prefix}: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise CleanupError(f"Listing {bucket}/{prefix}: {exc}") from None


def _objects_measure(ctx, item, cutoff):
    client, bucket, prefix = s3_client(ctx, item)
    old = young = old_bytes = young_bytes = 0
    oldest = newest = None
    for entry in _objects(client, bucket, prefix):
        modified = entry["LastModified"]
        if modified < cutoff:
            old += 1
            old_bytes += entry.get("Size") or 0
            oldest = modified if oldest is None else min(oldest, modified)
            newest = modified if newest is None else max(newest, modified)
        else:
            young += 1
            young_bytes += entry.get("Size") or 0
    return {
        "matched": old,
        "matched_bytes": old_bytes,
        "kept": young,
        "kept_bytes": young_bytes,
        "oldest": oldest,
        "newest": newest,
    }


def _objects_remove(ctx, item, cutoff, measured):
    client, bucket, prefix = s3_client(ctx, item)
    doomed = [
        (entry["Key"], entry.get("Size") or 0)
        for entry in _objects(client, bucket, prefix)
        if entry["LastModified"] < cutoff
    ]
    removed = freed = 0
    for index, (key, size) in enumerate(doomed):
        if index % 100 == 0:
            ctx.check_cancel()
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise CleanupError(f"Deleting {bucket}/{key}: {exc}") from None
        removed += 1
        freed += size
    return {"removed": removed, "freed_bytes": freed}


# -- backup snapshots ---------------------------------------------------------


def _snapshot_records(ctx, item, cutoff):
    """Return (old, young) good backup records of the item's service; the
    newest of each tier and strategy always stays."""
    records = list(
        BackupRecord.objects.filter(
            environment=ctx.environment,
            service_name=item.service,
            status="succeeded",
            pruned__isnull=True,
        )
        .exclude(snapshot_id="")
        .select_related("tier", "copied_from")
        .order_by("-created")
    )
    newest = set()
    old, young = [], []
    for record in records:
        group = (record.tier_id, record.strategy)
        if not record.tier.is_repository:
            # A tape is written once and rotated by its own schedule: the
            # portal cannot forget a snapshot on it.
            young.append(record)
        elif group not in newest:
            newest.add(group)
            young.append(record)
        elif record.data_read < cutoff:
            old.append(record)
        else:
            young.append(record)
    return old, young


def _snapshots_measure(ctx, item, cutoff):
    old, young = _snapshot_records(ctx, item, cutoff)
    return {
        "matched": len(old),
        "matched_bytes": sum(r.bytes_added or 0 for r in old),
        "kept": len(young),
        "kept_bytes": sum(r.bytes_added or 0 for r in young),
        "bytes_estimated": True,
        "oldest": min((r.data_read for r in old), default=None),
        "newest": max((r.data_read for r in old), default=None),
        "detail": {"records": [r.pk for r in old]},
    }


def _snapshots_remove(ctx, item, cutoff, measured):
    old, _young = _snapshot_records(ctx, item, cutoff)
    by_tier = {}
    for record in old:
        by_tier.setdefault(record.tier, []).append(record)
    removed = freed = 0
    for tier, records in by_tier.items():
        ctx.check_cancel()
        try:
            repo = repository(tier, ctx.environment)
            clear_stale_locks(ctx.environment, repo, ctx.log)
            repo.run("forget", *[r.snapshot_id for r in records], timeout=6 * 3600)
            repo.run("prune", timeout=6 * 3600)
        except (BackupError, ResticError) as exc:
            raise CleanupError(f"{tier.name}: {exc}") from None
        for record in records:
            record.pruned = timezone.now()
            record.save(update_fields=["pruned"])
        removed += len(records)
        freed += sum(r.bytes_added or 0 for r in records)
        ctx.log.info(f"{item.key}: {len(records)} snapshot(s) forgotten in {tier.name}")
    return {"removed": removed, "freed_bytes": freed}


_CLEANERS = {
    ItemKind.ROWS: (_rows_measure, _rows_remove),
    ItemKind.KEYS: (_keys_measure, _keys_remove),
    ItemKind.FILES: (_files_measure, _files_remove),
    ItemKind.COLLECTIONS: (_collections_measure, _collections_remove),
    ItemKind.INDICES: (_indices_measure, _indices_remove),
    ItemKind.OBJECTS: (_objects_measure, _objects_remove),
    ItemKind.SNAPSHOTS: (_snapshots_measure, _snapshots_remove),
}


def describe(measured):
    """Return a measure in a few words (for the log)."""
    if measured.get("skipped"):
        return f"skipped: {measured['skipped']}"
    return json.dumps(
        {k: measured.get(k) for k in ("matched", "matched_bytes", "kept", "oldest")}
    )

"""The cleaners: measure and delete one item's data, next to the data.

Every cleaner has two steps, :func:`measure` (what is older than the
cutoff and what stays; reads only) and :func:`remove` (delete what the
measure found old, in batches). A dry run calls :func:`measure` only.

==============  ============================================================
kind            how
==============  ============================================================
rows            ``psql`` in the service's container: counts, bytes
                (``pg_column_size``), oldest and newest by the date column;
                deletes ``batch_size`` rows per statement (its own
                transaction, so row locks are held for one batch only)
keys            one Lua script per ``SCAN`` step in the Redis container: a
                key's age is its idle time (``OBJECT IDLETIME``), its bytes
                ``MEMORY USAGE``; old keys are ``UNLINK``\\ ed, younger keys
                without a TTL get one for the rest of their days (the
                seed's ``EXPIRE``)
files           ``find`` in a helper container with the volume mounted (not
                file by file over the API): ``-mmin +<days * 1440>``, the
                item's path, name patterns, and the paths and patterns of
                more specific items pruned
==============  ============================================================

Collections, objects, indices and backup snapshots are measured as
"not built yet" (their records say so; nothing is deleted there).
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from stacks import engine
from stacks.secrets import MissingSecret, environ_for, resolve

from .choices import ItemKind

__all__ = ["CleanupError", "Context", "measure", "remove"]

DEFAULT_BATCH = 5000
KEY_SCAN_COUNT = 1000
DATA = "/data"


class CleanupError(Exception):
    """A cleaner could not measure or delete; the message says why."""


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
        from stacks.models import Service

        service = Service.objects.select_related("stack").filter(name=service_name)
        service = service.first()
        if service is None:
            raise CleanupError(f"No service {service_name} in stacks.yaml.")
        states = engine.service_states(
            self.client, self.environment.project_name(service.stack)
        )
        state = states.get(service_name)
        if state is None or state.state != "running":
            raise CleanupError(
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
        raise CleanupError(
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
    pg = _Postgres(ctx, item)
    batch = int(item.settings.get("batch_size") or DEFAULT_BATCH)
    old = _cutoff_sql(cutoff)
    removed = freed = batches = 0
    longest = 0.0
    while True:
        ctx.check_cancel()
        started = time.monotonic()
        # One statement, one transaction: the rows of one batch are locked
        # while it runs, never the table.
        line = pg.psql(
            f"WITH doomed AS (DELETE FROM {pg.table} t WHERE t.ctid = ANY(ARRAY("
            f"SELECT ctid FROM {pg.table} WHERE {pg.column} < {old} LIMIT {batch}"
            f")) RETURNING pg_column_size(t.*) AS size) "
            f"SELECT count(*), coalesce(sum(size), 0) FROM doomed"
        )
        longest = max(longest, time.monotonic() - started)
        count, size = (int(v) for v in line.split("|"))
        removed += count
        freed += size
        batches += 1
        if count < batch:
            break
    if item.settings.get("vacuum"):
        pg.psql(f"VACUUM ANALYZE {pg.table}")
    ctx.log.info(
        f"{item.key}: {removed} row(s) deleted in {batches} batch(es) of at most "
        f"{batch}; longest batch {longest:.3f} s"
    )
    return {
        "removed": removed,
        "freed_bytes": freed,
        "detail": {"batches": batches, "longest_batch_s": round(longest, 4)},
    }


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
    from retention.models import RetentionPolicy

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
# string is part of the script itself.
_FILES_SCRIPT = r"""
mode="$1"; base="$2"; shift 2
[ -d "$base" ] || { echo "0 0 -1 -1"; exit 0; }
if [ "$mode" = delete ]; then
  # One walk: each batch of names is measured, then removed (not -delete,
  # which implies -depth and would ignore the prunes).
  find "$base" "$@" -exec sh -c 'stat -c %s "$@" && rm -f "$@"' sh {} + |
    awk '{n++; b+=$1} END {printf "%d %d\n", n, b}'
else
  find "$base" "$@" -exec stat -c '%Y %s' {} + | awk '
    {n++; b+=$2; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1}
    END {printf "%d %d %s %s\n", n, b, (min == "" ? -1 : min), (max == "" ? -1 : max)}'
fi
"""


def find_tests(item, days, *, young=False):
    """Return find's arguments after the folder: prunes, names, age."""
    base = f"{DATA}/{item.path}".rstrip("/")
    args = []
    if item.excludes:
        args += ["("]
        for index, path in enumerate(item.excludes):
            if index:
                args.append("-o")
            args += ["-path", f"{DATA}/{path}"]
        args += [")", "-prune", "-o"]
    args += ["-type", "f"]
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
                type="volume", target=DATA, source=volume, read_only=mode != "delete"
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


_CLEANERS = {
    ItemKind.ROWS: (_rows_measure, _rows_remove),
    ItemKind.KEYS: (_keys_measure, _keys_remove),
    ItemKind.FILES: (_files_measure, _files_remove),
}


def describe(measured):
    """Return a measure in a few words (for the log)."""
    if measured.get("skipped"):
        return f"skipped: {measured['skipped']}"
    return json.dumps(
        {k: measured.get(k) for k in ("matched", "matched_bytes", "kept", "oldest")}
    )

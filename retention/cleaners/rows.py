"""Rows of PostgreSQL tables: measured and deleted with ``psql`` in the
service's container."""

import time

from backups.strategies.base import checked
from stacks import engine

from .base import DEFAULT_BATCH, CleanupError, _stamp


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


def measure_rows(ctx, item, cutoff):
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


def remove_rows(ctx, item, cutoff, measured):
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

"""PostgreSQL: ``pg_dump -Fc`` in the container, streamed into restic.

Three strategies (the seed's ``backup_commands``): ``full`` (schema and
data, with the ``database_settings`` of the file), ``schema`` and
``data``. The manifest counts the rows of every table just before the dump
starts, and records the server version (a restore drill uses a server of
the same version).
"""

from .base import Strategy, checked

__all__ = ["PostgresStrategy", "count_rows_sql"]

# Exact row counts of every user table in one statement.
COUNT_ROWS_SQL = """
SELECT table_schema || '.' || table_name,
       (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
        table_schema, table_name), false, true, '')))[1]::text::bigint
  FROM information_schema.tables
 WHERE table_type = 'BASE TABLE'
   AND table_schema NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1
"""


def count_rows_sql():
    """Return the statement giving ``schema.table|rows`` lines."""
    return COUNT_ROWS_SQL


def parse_counts(text):
    """Return {table: rows} from ``psql -At`` output of COUNT_ROWS_SQL."""
    counts = {}
    for line in text.splitlines():
        if "|" in line:
            table, _, rows = line.rpartition("|")
            counts[table] = int(rows)
    return counts


class PostgresStrategy(Strategy):
    """``pg_dump -Fc`` of the service's database, streamed into restic."""

    def __init__(self, context, name):
        super().__init__(context)
        self.name = name
        env = self.container_env()
        self.user = env.get("POSTGRES_USER") or "postgres"
        self.database = env.get("POSTGRES_DB") or self.user
        self.filename = f"{self.database}.{name}.dump"

    def psql(self, sql):
        return self.exec_text(
            ["psql", "-At", "-X", "-U", self.user, "-d", self.database, "-c", sql]
        )

    def manifest(self):
        counts = parse_counts(self.psql(COUNT_ROWS_SQL))
        version = self.psql("SHOW server_version").strip()
        size = int(self.psql(f"SELECT pg_database_size('{_quote(self.database)}')"))
        return {
            "engine": "postgresql",
            "server_version": version,
            "database": self.database,
            "tables": counts,
            "rows": sum(counts.values()),
            "database_bytes": size,
        }

    def dump_command(self):
        settings = (self.context.strategy.settings or {}).get("database_settings") or {}
        cmd = ["pg_dump", "-U", self.user, "-d", self.database, "-Fc"]
        if settings.get("no_owner", True):
            cmd.append("--no-owner")
        if settings.get("no_privileges", True):
            cmd.append("--no-privileges")
        if self.name == "schema" or (
            self.name == "full" and settings.get("schema_only")
        ):
            cmd.append("--schema-only")
        elif self.name == "data" or (self.name == "full" and settings.get("data_only")):
            cmd.append("--data-only")
        return cmd

    def backup(self, repository, *, tags, host):
        context = self.context
        stream = self.stream_from(self.dump_command())
        with stream:
            return repository.backup_stream(
                checked(
                    stream,
                    f"pg_dump of {self.database} in {context.service.name}",
                    context,
                ),
                filename=self.filename,
                tags=tags,
                host=host,
            )


def _quote(name):
    return name.replace("'", "''")

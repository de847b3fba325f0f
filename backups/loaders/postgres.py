"""PostgreSQL: the dump streamed from restic into ``pg_restore`` in the
container.

``pg_restore --clean --if-exists --single-transaction --no-owner
--no-privileges`` into the container's database (its ``POSTGRES_DB``): the
objects the dump holds are dropped and created again, in one transaction,
so a restore that fails half-way leaves the database as it was. A drill's
copy starts empty, so it gets a plain ``pg_restore --exit-on-error`` (what
an operator would run by hand; ``bench/bench_drill.py`` compares the two). Objects
the dump does not hold (a table created after the backup) stay. A ``full``
dump is compared table by table (exact row counts); a ``schema`` dump by
the tables it creates. A ``data`` dump is half a database and is not
loaded: restore or drill its ``full`` backup.
"""

from stacks import engine

from ..strategies.postgres import PostgresStrategy
from ..tiers import BackupError
from .base import Loader, RestoreRefused, counts, item

__all__ = ["PostgresLoader", "restore_command"]

RESTORE_OPTIONS = [
    "--clean",
    "--if-exists",
    "--single-transaction",
    "--no-owner",
    "--no-privileges",
]
# A drill's copy starts empty: nothing to drop, no reader to keep a
# consistent view for; the first error still stops it.
DRILL_OPTIONS = ["--exit-on-error", "--no-owner", "--no-privileges"]


def restore_command(user, database, *, scratch=False):
    """Return the ``pg_restore`` argument list a restore (``scratch``: a
    drill into a fresh copy) runs."""
    options = DRILL_OPTIONS if scratch else RESTORE_OPTIONS
    return ["pg_restore", "-U", user, "-d", database, *options]


class PostgresLoader(Loader):
    """``pg_restore`` of a ``pg_dump -Fc`` in the container."""

    def check(self):
        strategy = self.source.strategy
        if strategy == "data" or (strategy == "schema" and not self.target.scratch):
            raise RestoreRefused(
                f"A {strategy} dump of {self.target.name} is half a database: "
                + (
                    "only full backups are restored onto the live service"
                    if strategy == "schema"
                    else "it is not loaded on its own"
                )
                + "; restore (or drill) a full backup."
            )

    def strategy(self):
        return PostgresStrategy(self.target.context(), self.source.strategy)

    def overwrites(self):
        database = self.strategy().database
        manifest = self.source.manifest
        return (
            {"database": database, "replaces": "the objects the dump holds"},
            {
                "tables": len(manifest.get("tables") or {}),
                "rows": manifest.get("rows"),
                "database_bytes": manifest.get("database_bytes"),
            },
        )

    def load(self):
        target = self.target
        impl = self.strategy()
        command = restore_command(impl.user, impl.database, scratch=target.scratch)
        self.log.info(
            f"{target.name}: {' '.join(command)} < {self.source.file} of {self.source}"
        )
        with self.source.repository.dump(
            self.source.snapshot_id, self.source.file
        ) as data:
            stream = engine.exec_stream(
                target.client, target.container, command, stdin=data
            )
            with stream:
                for _chunk in stream:
                    target.check_cancel()
            # Inside the dump's block: a failed pg_restore stops restic, and
            # its own error is the one raised.
            result = stream.result
            if result is None or not result.ok:
                raise BackupError(
                    f"pg_restore into {impl.database} of {target.name} exited with "
                    f"{result.exit_code if result else 'no code'}: "
                    f"{result.stderr_text(800) if result else ''}"
                )
        return {"database": impl.database}

    def measure(self):
        return self.strategy().manifest()

    def compare(self, found):
        expected = self.source.manifest.get("tables") or {}
        tables = found.get("tables") or {}
        if not self.target.scratch:
            # Tables created since the backup stay on the live service.
            tables = {t: n for t, n in tables.items() if t in expected}
        if self.source.strategy == "schema":
            return [
                item(
                    f"table {name}",
                    "present" if name in expected else "absent",
                    "present" if name in tables else "absent",
                )
                for name in sorted(set(expected) | set(tables))
            ]
        return [
            *counts("rows of {name}", expected, tables, missing="no table"),
            item("tables", len(expected), len(tables)),
        ]

"""Is the database ready for the portal's commands? If not, what to run.

A fresh checkout has no database until ``manage.py migrate`` (or
``scripts/demo.sh``, which runs ``bootstrap_demo``) creates it. A command run
before that would fail deep inside with "no such table"; :func:`database_problem`
says instead what is missing and what to run, and never creates the SQLite
file itself (connecting would).
"""

from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

__all__ = ["MIGRATE", "database_problem"]

MIGRATE = "`.venv/bin/python manage.py migrate`"
DEMO = "or run `scripts/demo.sh` to set up the demo"

# Aliases found ready once in this process; a long-running worker or a test
# session calling commands many times asks only once.
_ready = set()


def describe(connection):
    """Return how to name the database to a person, without credentials."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return str(settings_dict["NAME"])
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"{settings_dict['NAME']!r} ({connection.display_name} on {host}{port})"


def _sqlite_file(connection):
    """Return the path of a file-backed SQLite database, else None."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def database_problem(using=DEFAULT_DB_ALIAS):
    """Return what keeps the database ``using`` from serving commands, or None.

    The answer names the database and says what to run: it does not exist,
    cannot be opened, has no tables, or misses migrations.
    """
    connection = connections[using]
    key = (using, str(connection.settings_dict["NAME"]))
    if key in _ready:
        return None
    name = describe(connection)
    path = _sqlite_file(connection)
    if path is not None and not path.exists():
        return f"The database {name} does not exist. Create it with {MIGRATE}, {DEMO}."
    try:
        executor = MigrationExecutor(connection)
        recorded = executor.recorder.has_table()
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return (
            f"Cannot open the database {name}: {str(exc).strip()}\n"
            "Check DATABASE_URL and that the database server is running."
        )
    if not recorded:
        return f"The database {name} has no tables. Create them with {MIGRATE}, {DEMO}."
    if plan:
        pending = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
        shown = ", ".join(pending[:3]) + (", …" if len(pending) > 3 else "")
        count = len(pending)
        return (
            f"The database {name} lacks {count} migration{'s' if count != 1 else ''} "
            f"({shown}). Apply {'them' if count != 1 else 'it'} with {MIGRATE}."
        )
    _ready.add(key)
    return None

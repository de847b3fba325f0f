"""Commands run before the database exists say what to run, never a traceback.

Each case is a real ``manage.py`` process pointed by DATABASE_URL at a fresh
SQLite path: missing, empty, or migrated only in part.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

from portal.management.base import PortalCommand

ROOT = Path(settings.BASE_DIR)
APPS = ("portal", "stacks", "backups", "retention")
MIGRATE = "`.venv/bin/python manage.py migrate`"

# One invocation of every command of the project, as a person would type it.
COMMANDS = [
    ["stack", "status", "core", "--env", "demo"],
    ["import_configs"],
    ["export_configs"],
    ["render_compose", "--env", "demo"],
    ["run_worker", "--burst"],
    ["run_operation", "host.check", "--env", "demo"],
    ["check_host", "--env", "demo"],
    ["cancel_operation", str(uuid.uuid4())],
    ["approve_operation", "--list"],
    ["reap_operations"],
    ["verify_audit"],
    ["backup", "status", "--env", "demo"],
    ["retention", "status", "--env", "demo"],
    ["crontab"],
    ["check_network_conflicts", "--env", "demo"],
    ["validate_networks", "--env", "demo"],
    ["check_network_health", "--env", "demo"],
    ["cleanup_networks", "--env", "demo", "--dry-run"],
    ["wipe", "stack", "core", "--env", "demo"],
    ["check_credentials", "--env", "demo"],
    ["scan_secrets"],
]


def manage(database, *args):
    """Start ``manage.py args`` on the SQLite file ``database``."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": f"sqlite:///{database}",
            "REDIS_URL": settings.REDIS_URL,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    """Return ``(exit code, stdout, stderr)`` of a process started by manage()."""
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_every_command_of_the_project_checks_the_database():
    ours = {name: app for name, app in get_commands().items() if app in APPS}
    assert set(ours) == {args[0] for args in COMMANDS} | {"bootstrap_demo"}
    for name, app in ours.items():
        command = load_command_class(app, name)
        assert isinstance(command, PortalCommand), name
        # Only the command that creates the database may skip the check.
        assert command.requires_database is (name != "bootstrap_demo"), name


def test_commands_on_a_missing_database_say_to_migrate(tmp_path):
    database = tmp_path / "portal.sqlite3"
    # All at once: each is a Django start-up of a second or two.
    processes = [(args, manage(database, *args)) for args in COMMANDS]
    expected = (
        f"CommandError: The database {database} does not exist. Create it with "
        f"{MIGRATE}, or run `scripts/demo.sh` to set up the demo.\n"
    )
    for args, process in processes:
        code, out, err = finish(process)
        assert (code, out, err) == (1, "", expected), args
    # Asking did not create it.
    assert not database.exists()


def test_command_on_a_database_without_tables_says_to_migrate(tmp_path):
    database = tmp_path / "portal.sqlite3"
    database.touch()
    code, out, err = finish(
        manage(database, "stack", "status", "core", "--env", "demo")
    )
    assert (code, out) == (1, "")
    assert err == (
        f"CommandError: The database {database} has no tables. Create them with "
        f"{MIGRATE}, or run `scripts/demo.sh` to set up the demo.\n"
    )


@pytest.mark.slow
def test_command_on_a_database_missing_migrations_names_them(tmp_path):
    database = tmp_path / "portal.sqlite3"
    code, out, err = finish(manage(database, "migrate", "auth", "-v", "0"))
    assert code == 0, err
    code, out, err = finish(manage(database, "import_configs"))
    assert (code, out) == (1, "")
    assert err.startswith(f"CommandError: The database {database} lacks "), err
    assert "migrations (admin.0001_initial, " in err
    assert err.endswith(f", …). Apply them with {MIGRATE}.\n")
    assert "Traceback" not in err

"""Cron lines from the stored schedules, one registry filled by the apps.

The schedules live in the database (a backup policy's ``schedule``; later
the retention policies'). An app registers a provider in its
``AppConfig.ready()`` with :func:`register_schedule`; the provider returns
:class:`ScheduledCommand` entries, and ``manage.py crontab`` renders every
entry as one line of a cron.d file (:func:`cron_line`): the environment's
``manage.py`` command with absolute paths, its output appended to a log file
of its own. The core knows no feature app; it only renders.

Cron runs each line with ``/bin/sh``, so every word is quoted
(:func:`shlex.quote`) and ``%``, which cron turns into a newline, is
escaped.
"""

import getpass
import os
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from croniter import croniter
from django.conf import settings

__all__ = [
    "ScheduledCommand",
    "cron_line",
    "default_log_dir",
    "invalid_schedule",
    "next_runs",
    "register_schedule",
    "scheduled_commands",
]

_providers = {}


@dataclass(frozen=True)
class ScheduledCommand:
    """A ``manage.py`` command that cron runs on a schedule.

    Attributes:
        name: names the log file (``<name>.log``): letters, digits, ``-``.
        schedule: five cron fields, in the host's time zone.
        args: the ``manage.py`` arguments, e.g. ``("backup", "full", "--env",
            "demo", "--scheduled")``.
        environment: the environment's name.
        verb: what the acting user needs there (``portal.choices.Verb``).
        description: one line, written as a comment above the line.
    """

    name: str
    schedule: str
    args: tuple
    environment: str
    verb: str
    description: str = ""


def register_schedule(name, provider):
    """Register ``provider()`` under ``name`` (a new one replaces it)."""
    _providers[name] = provider
    return provider


def scheduled_commands(environment=None):
    """Return every provider's commands (those of ``environment``, a name),
    sorted by environment and name."""
    commands = [
        command
        for name in sorted(_providers)
        for command in _providers[name]()
        if environment is None or command.environment == environment
    ]
    return sorted(commands, key=lambda c: (c.environment, c.name))


def invalid_schedule(schedule):
    """Return why ``schedule`` is not five valid cron fields, or None."""
    fields = schedule.split()
    if len(fields) != 5:
        return f"{schedule!r} has {len(fields)} fields; cron needs 5"
    if not croniter.is_valid(schedule):
        return f"{schedule!r} is not a valid cron expression"
    return None


def next_runs(schedule, count=3, *, after=None):
    """Return the next ``count`` times ``schedule`` fires after ``after``."""
    base = after or datetime.now()
    runs = croniter(schedule, base)
    return [runs.get_next(datetime) for _ in range(count)]


def _cron_word(word):
    return shlex.quote(str(word)).replace("%", "\\%")


def default_log_dir():
    """Return the default folder of the log files: ``.state/cron``."""
    return Path(settings.BASE_DIR) / ".state" / "cron"


def cron_line(command, *, python=None, log_dir=None, run_as=None, user=""):
    """Return the cron line of ``command``.

    Args:
        python: the interpreter (default: this process's).
        log_dir: folder of the log files (default :func:`default_log_dir`).
        run_as: the system user field of a cron.d file (default: the current
            user; "" for a user's own crontab, which has none).
        user: the portal user the command acts as (``--user``); "" for the
            system user.
    """
    python = os.path.abspath(python or sys.executable)
    manage = Path(settings.BASE_DIR).resolve() / "manage.py"
    log_dir = os.path.abspath(log_dir or default_log_dir())
    run_as = getpass.getuser() if run_as is None else run_as
    argv = [python, manage, *command.args]
    if user:
        argv += ["--user", user]
    words = " ".join(_cron_word(word) for word in argv)
    log = _cron_word(f"{log_dir}/{command.name}.log")
    who = f"{run_as} " if run_as else ""
    return f"{command.schedule} {who}{words} >> {log} 2>&1"

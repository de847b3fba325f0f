"""Render the stored schedules as a cron.d file, or install it.

    manage.py crontab [--env E ...] [--user U] [--run-as OSUSER]
        [--log-dir DIR] [--python PATH] [--install [PATH]]

Every schedule an app registers (:mod:`portal.schedules`; today each
environment's backup schedule) becomes one line calling ``manage.py`` with
absolute paths and appending to ``<log dir>/<name>.log``. Without
``--install`` the file is printed; with it, it is written (atomically, mode
0644) to ``/etc/cron.d/stack-portal`` or the path given, and the log folder
is created. Run it again after a schedule changes.
"""

import os
import re
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from portal.choices import Verb
from portal.management.base import PortalCommand
from portal.models import environment_model
from portal.operations import get_config
from portal.permissions import user_can
from portal.schedules import (
    cron_line,
    default_log_dir,
    invalid_schedule,
    scheduled_commands,
)

DEFAULT_CRON_FILE = "/etc/cron.d/stack-portal"
CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables a cron.d line may set: names and values cron reads literally.
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.@-]+")
# What the lines need from the process environment of this command. Secrets
# (SECRET_KEY, DATABASE_URL) never go into a world-readable cron file: the
# commands read them from the .env file next to manage.py, as settings do.
PASSED_ON = ("DJANGO_SETTINGS_MODULE", "PORTAL_SYSTEM_USER")


class Command(PortalCommand):
    help = (
        "Print the cron lines of every stored schedule (each environment's "
        "backup schedule), or install them as a cron.d file."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--env",
            action="append",
            default=[],
            help="Only this environment (name); repeat for more.",
        )
        parser.add_argument(
            "--user",
            default="",
            help="Portal user the scheduled commands act as (--user of each "
            "line); default: the system user when they run.",
        )
        parser.add_argument(
            "--run-as",
            default=None,
            help="System user cron runs the lines as (the user field of a "
            "cron.d file; default: the current user).",
        )
        parser.add_argument(
            "--log-dir",
            default=None,
            help="Folder of the log files, one per line (default: .state/cron "
            "of this checkout).",
        )
        parser.add_argument(
            "--python",
            default=None,
            help="Python interpreter of the lines (default: this one).",
        )
        parser.add_argument(
            "--install",
            nargs="?",
            const=DEFAULT_CRON_FILE,
            metavar="PATH",
            help=f"Write the file (default path {DEFAULT_CRON_FILE}) instead of "
            "printing it.",
        )

    def handle(self, *args, **options):
        user = self.acting_user(options["user"])
        wanted = options["env"]
        known = set(environment_model().objects.values_list("name", flat=True))
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise CommandError(f"No environment {', '.join(map(repr, unknown))}.")
        commands = [
            c for c in scheduled_commands() if not wanted or c.environment in wanted
        ]
        problems = [
            f"{c.environment}: schedule of {c.name}: {invalid_schedule(c.schedule)}"
            for c in commands
            if invalid_schedule(c.schedule)
        ]
        if problems:
            raise CommandError(
                "Not a cron schedule; fix it where it is set (the admin, the YAML "
                "files, or PORTAL_STACKS for network-health), then run crontab "
                "again:\n  " + "\n  ".join(problems)
            )
        text = self.render(commands, user, options)
        if options["install"] is None:
            self.stdout.write(text, ending="")
            return
        path = Path(options["install"])
        if not path.parent.is_dir():
            raise CommandError(f"No folder {path.parent} to install {path.name} in.")
        log_dir = Path(options["log_dir"] or default_log_dir())
        log_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
        self.stdout.write(
            self.style.SUCCESS(
                f"Installed {len(commands)} cron line(s) in {path}; logs in "
                f"{log_dir.resolve()}."
            )
        )

    def acting_user(self, username):
        """Return the portal user the lines act as, or None if unknown."""
        User = get_user_model()
        if username:
            user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"No user {username!r}.")
            return user
        name = get_config()["SYSTEM_USER"]
        return User.objects.filter(**{User.USERNAME_FIELD: name}).first()

    def render(self, commands, user, options):
        log_dir = os.path.abspath(options["log_dir"] or default_log_dir())
        lines = [
            "# Stack Portal: the stored schedules as cron lines (manage.py crontab).",
            "# Run `manage.py crontab --install` again after a schedule changes.",
            f"# Each line appends its output to {log_dir}/<name>.log.",
            "SHELL=/bin/sh",
            f"PATH={CRON_PATH}",
        ]
        for name in PASSED_ON:
            value = os.environ.get(name, "")
            if name == "PORTAL_SYSTEM_USER" and options["user"]:
                continue
            if value and SAFE_VALUE.fullmatch(value):
                lines.append(f"{name}={value}")
        if not commands:
            lines += ["", "# No stored schedule."]
        environments = {
            e.name: e
            for e in environment_model().objects.filter(
                name__in={c.environment for c in commands}
            )
        }
        who = user.get_username() if user else get_config()["SYSTEM_USER"]
        for command in commands:
            lines.append("")
            if command.description:
                lines.append(f"# {command.environment}: {command.description}")
            environment = environments.get(command.environment)
            warning = None
            if user is None:
                warning = (
                    f"the system user {who} does not exist: this line will be "
                    "refused (run bootstrap_demo, or pass --user to crontab)"
                )
            elif not user_can(user, command.verb, environment):
                warning = (
                    f"{who} may not {Verb(command.verb).label.lower()} in "
                    f"{command.environment}: this line will be refused (pass "
                    "--user to crontab, or grant that user a role there)"
                )
            if warning:
                lines.append(f"# WARNING: {warning}")
                self.stderr.write(f"Warning: {warning}.")
            lines.append(
                cron_line(
                    command,
                    python=options["python"],
                    log_dir=log_dir,
                    run_as=options["run_as"],
                    user=options["user"],
                )
            )
        return "\n".join(lines) + "\n"

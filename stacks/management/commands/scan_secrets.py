"""Find secrets written into configuration instead of referred to.

    manage.py scan_secrets [PATH ...] [--no-database] [--show-allowed] [--json]

Without PATH it scans the configuration folder (``configs/``), the rendered
compose files (``rendered/``) and the configuration stored in the database
(what the admin may have changed since the last import). Each finding names
the file, the line and the key path, and what was found; never the value.
``make scan-secrets`` calls this. Exit status: 0 nothing found, 1 hard-coded
secrets found, 2 a path could not be read. Each run is recorded in the
audit log (``secrets.scanned``).
"""

import json

from django.core.management.base import CommandError
from django.db import transaction

from portal.audit import record
from portal.management.base import PortalCommand
from stacks.credentials import scan


class Command(PortalCommand):
    help = (
        "Scan configuration files, rendered compose files and the stored "
        "configuration for hard-coded secrets (literal values in password, "
        "secret, key and token fields, private keys, well-known token "
        "formats). Exit 1 when any is found."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "paths",
            nargs="*",
            metavar="PATH",
            help="Files or folders to scan (default: configs/ and rendered/).",
        )
        parser.add_argument(
            "--no-database",
            action="store_true",
            help="Do not scan the configuration stored in the database.",
        )
        parser.add_argument(
            "--show-allowed",
            action="store_true",
            help="Also list what 'scan-secrets: allow' comments allow.",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, paths, no_database=False, show_allowed=False, **options):
        report = scan(paths or None, database=not no_database)
        with transaction.atomic():
            record(
                "secrets.scanned",
                object_repr=", ".join(paths) if paths else "default targets",
                data={
                    "files": len(report.files),
                    "database": report.database,
                    "found": [str(f) for f in report.reported][:200],
                    "found_total": len(report.reported),
                    "allowed": len(report.allowed),
                    "problems": report.problems,
                },
            )
        if options.get("json"):
            self.stdout.write(
                json.dumps(
                    {
                        "files": report.files,
                        "database": report.database,
                        "findings": [
                            {
                                "file": f.file,
                                "line": f.line,
                                "path": f.path,
                                "kind": f.kind,
                                "what": f.what,
                                "allowed": f.allowed,
                            }
                            for f in report.findings
                        ],
                        "skipped": report.skipped,
                        "problems": report.problems,
                    },
                    indent=2,
                )
            )
        else:
            for finding in report.reported:
                self.stdout.write(self.style.ERROR(str(finding)))
            if show_allowed:
                for finding in report.allowed:
                    self.stdout.write(f"allowed: {finding}")
            if options.get("verbosity", 1) >= 2:
                for skipped in report.skipped:
                    self.stdout.write(f"skipped: {skipped}")
            for problem in report.problems:
                self.stderr.write(problem)
            self.stdout.write(report.summary())
        if report.problems:
            raise CommandError(
                f"{len(report.problems)} path(s) could not be scanned.", returncode=2
            )
        if report.reported:
            raise CommandError(
                f"{len(report.reported)} hard-coded secret(s) found.", returncode=1
            )

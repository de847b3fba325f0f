"""Import configs/stacks.yaml into the configuration models."""

from django.contrib.auth import get_user_model
from django.core.management import CommandError

from portal.management.base import PortalCommand
from portal.permissions import user_can
from stacks.config import import_configs
from stacks.schema.loader import ConfigError


class Command(PortalCommand):
    help = (
        "Validate configs/stacks.yaml (and retention-policies.yaml and "
        "backup-strategies.yaml next to it) and import it into the database. "
        "Nothing is written when there is any error. Objects that are no "
        "longer in the file are kept unless --prune is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--file",
            dest="path",
            help="stacks file to import (default: <PORTAL_CONFIG_DIR>/stacks.yaml)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="report what would change and write nothing",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete objects that are in the database but not in the file",
        )
        parser.add_argument(
            "--user",
            help="record the import in the audit log as this user, who must "
            "be an Admin of every environment (default: the system)",
        )

    def handle(
        self,
        *args,
        path=None,
        dry_run=False,
        prune=False,
        user=None,
        verbosity=1,
        **options,
    ):
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"No user named {user!r}.")
            # The configuration spans every environment.
            if not user_can(actor, "admin", None):
                raise CommandError(
                    f"{user} may not import configuration: it needs the Admin "
                    "role on all environments."
                )
        try:
            report = import_configs(path, dry_run=dry_run, prune=prune, user=actor)
        except ConfigError as exc:
            count = len(exc.issues)
            raise CommandError(
                f"{count} error{'s' if count != 1 else ''}; nothing was imported:\n"
                + "\n".join(str(i) for i in exc.issues)
            ) from None
        if verbosity >= 1:
            for name in report.checked_files[1:]:
                self.stdout.write(f"checked      {name}")
            for warning in report.warnings:
                self.stdout.write(self.style.WARNING(f"warning: {warning}"))
            for entry in report.entries:
                self.stdout.write(str(entry))
        counts = report.counts()
        if counts["not in file"] and not prune:
            self.stdout.write(
                f"{counts['not in file']} object(s) are not in the file and were "
                "kept; --prune deletes them"
            )
        style = self.style.SUCCESS if not dry_run else self.style.NOTICE
        self.stdout.write(style(report.summary()))

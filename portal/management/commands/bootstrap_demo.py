"""Prepare a fresh database for the demo: migrate, import configs, admin user."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command

from portal.choices import Role
from portal.management.base import PortalCommand
from portal.models import RoleAssignment


class Command(PortalCommand):
    help = (
        "Migrate, import configs/*.yaml and make sure an admin user exists. "
        "Safe to run again: nothing that exists is changed."
    )
    # It creates the database.
    requires_database = False

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--password-env",
            default="PORTAL_ADMIN_PASSWORD",
            help="Environment variable holding the admin password to set on "
            "creation; when unset a random one is generated and printed once.",
        )

    def handle(self, *args, username, password_env, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        call_command("import_configs", stdout=self.stdout)
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get(password_env) or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username, password=password)
            RoleAssignment.objects.get_or_create(
                user=user, environment=None, role=Role.ADMIN
            )
            shown = (
                f"the password in ${password_env}"
                if os.environ.get(password_env)
                else password
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"created superuser {username!r}; log in with password: {shown}\n"
                    "(shown only now; change it with "
                    f"`manage.py changepassword {username}`)"
                )
            )
        else:
            self.stdout.write(
                f"user {username!r} exists; forgot the password? "
                f"`.venv/bin/python manage.py changepassword {username}`"
            )

"""Prepare a fresh database for the demo: migrate, import configs, users.

Two users: an admin (a superuser who logs in) and the system user that
commands act as without ``--user`` (``portal-system`` unless configured
otherwise). The system user is a real, recorded actor of the audit log: not
staff, with an unusable password so it can never log in, and the Operator
role on the demo environment only, so ``make start-core`` works on the demo
and every other environment still needs a named user.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command

from portal.choices import Role
from portal.management.base import PortalCommand
from portal.models import RoleAssignment, environment_model
from portal.operations import get_config

DEMO_ENVIRONMENT = "demo"


class Command(PortalCommand):
    help = (
        "Migrate, import configs/*.yaml and make sure an admin user and the "
        "system user (Operator of the demo environment) exist. Safe to run "
        "again: nothing that exists is changed."
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
        self.system_user()

    def system_user(self):
        """Make sure the system user exists and operates the demo environment."""
        username = get_config()["SYSTEM_USER"]
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        created = user is None
        if created:
            user = User(**{User.USERNAME_FIELD: username})
            user.set_unusable_password()
            user.save()
        demo = environment_model().objects.filter(name=DEMO_ENVIRONMENT).first()
        if demo is None:
            self.stdout.write(
                self.style.WARNING(
                    f"no environment {DEMO_ENVIRONMENT!r} in the configuration: "
                    f"system user {username!r} has no role"
                )
            )
            return
        _, granted = RoleAssignment.objects.get_or_create(
            user=user, environment=demo, role=Role.OPERATOR
        )
        if created or granted:
            self.stdout.write(
                f"system user {username!r} ready: commands without --user act as "
                f"it, as Operator of environment {demo.name} only; it cannot log in"
            )

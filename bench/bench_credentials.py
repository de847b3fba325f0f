"""The credential check's share of the environment page, on the real config.

Creates a throw-away SQLite database, imports the real configs/ (30
services, 5 environments, 4 storage tiers), then in the same run measures
the median of N runs of:

- ``check_environment(demo)``: every reference of every service and tier,
  the env file, the example files, the rules (what the page and every start
  run),
- the same for one stack (``stacks=[core]``, what a start of core runs),
- a whole environment page (``GET /environments/demo/``, the status read
  from the Docker engine included) through Django's test client as a
  viewer,

and prints each with the check's share of the page. Removes the database at
the end. Run from the repository root:

    python bench/bench_credentials.py [--runs 50]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.gettempdir()) / f"bench-credentials-{os.getpid()}.sqlite3"
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402

from portal.choices import Role  # noqa: E402
from portal.models import RoleAssignment  # noqa: E402
from stacks.config import import_configs  # noqa: E402
from stacks.credentials import check_environment  # noqa: E402
from stacks.models import Environment, Stack  # noqa: E402


def median_ms(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    try:
        call_command("migrate", verbosity=0)
        import_configs()
        demo = Environment.objects.get(name="demo")
        core = Stack.objects.get(name="core")
        user = get_user_model().objects.create_user("bench-viewer", password="x")
        RoleAssignment.objects.create(user=user, role=Role.VIEWER, environment=demo)
        setup_test_environment()
        client = Client()
        client.force_login(user)
        url = reverse("stacks:environment_detail", args=[demo.name])
        assert client.get(url).status_code == 200
        report = check_environment(demo)
        whole = median_ms(lambda: check_environment(demo), args.runs)
        stack = median_ms(lambda: check_environment(demo, stacks=[core]), args.runs)
        page = median_ms(lambda: client.get(url), args.runs)
        print(
            f"variables checked: {len(report.variables)} "
            f"({sum(v.credential for v in report.variables)} credentials)"
        )
        print(f"check_environment(demo)        median {whole:7.2f} ms")
        print(f"check_environment(demo, core)  median {stack:7.2f} ms")
        print(f"GET /environments/demo/        median {page:7.2f} ms")
        print(f"the check's share of the page: {whole / page:.0%}")
    finally:
        DB.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

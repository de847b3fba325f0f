"""Environment page and status JSON with 150 containers: latency, Django
queries and Docker API requests per page view.

Creates a throw-away SQLite database with one environment of 6 stacks x 25
services, runs 150 labelled busybox sleepers (every 10th one exited), then
requests the page and the JSON N times through Django's test client as a
viewer of the environment. Removes the containers and the database at the
end. Run from the repository root:

    python bench/bench_env_page.py [--requests 50] [--stacks 6] [--services 25]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.gettempdir()) / f"bench-env-page-{os.getpid()}.sqlite3"
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402

from portal.models import RoleAssignment  # noqa: E402
from stacks.engine import client_for  # noqa: E402
from stacks.models import Environment, Service, Stack  # noqa: E402

BUSYBOX = "stackportal/busybox:local"
BENCH_LABEL = "portal.bench"


def build_world(run, n_stacks, n_services):
    env = Environment.objects.create(name=f"bench-{run}")
    for s in range(n_stacks):
        stack = Stack.objects.create(name=f"stack{s}", order=s)
        Service.objects.bulk_create(
            Service(stack=stack, name=f"stack{s}-svc{i:02d}", image=BUSYBOX, order=i)
            for i in range(n_services)
        )
    users = {}
    for role in ("viewer", "operator"):
        users[role] = get_user_model().objects.create_user(
            f"bench-{role}", password="x"
        )
        RoleAssignment.objects.create(user=users[role], environment=env, role=role)
    return env, users


def start_containers(client, env, run):
    def start(service):
        stack = service.stack
        project = env.project_name(stack)
        exited = service.order % 10 == 9
        script = (
            "exit 0"
            if exited
            else "i=0; while [ $i -lt 3600 ]; do sleep 1; i=$((i+1)); done"
        )
        return client.containers.run(
            BUSYBOX,
            ["sh", "-c", script],
            name=f"{project}-{service.name}-1",
            detach=True,
            init=True,
            labels={
                "com.docker.compose.project": project,
                "com.docker.compose.service": service.name,
                "portal.managed": "true",
                "portal.environment": env.name,
                "portal.stack": stack.name,
                "portal.service": service.name,
                BENCH_LABEL: run,
            },
        )

    services = list(Service.objects.select_related("stack"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, services))


def remove_containers(client, run):
    found = client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run}"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: c.remove(force=True, v=True), found))
    return len(found)


def measure(http, url, docker_requests, n):
    for _ in range(3):  # warm-up: templates, cached Docker client
        assert http.get(url).status_code == 200
    times, queries, calls = [], [], []
    for _ in range(n):
        before = len(docker_requests)
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = http.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        queries.append(len(captured.captured_queries))
        calls.append(len(docker_requests) - before)
    times.sort()
    return {
        "median": statistics.median(times),
        "p95": times[max(0, int(round(0.95 * len(times))) - 1)],
        "max": times[-1],
        "queries": max(queries),
        "docker": max(calls),
        "bytes": len(response.content),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--stacks", type=int, default=6)
    parser.add_argument("--services", type=int, default=25)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    engine = docker.from_env(timeout=120)
    setup_test_environment()
    call_command("migrate", verbosity=0)
    try:
        env, users = build_world(run, args.stacks, args.services)
        started = time.perf_counter()
        containers = start_containers(engine, env, run)
        print(
            f"{len(containers)} containers started in "
            f"{time.perf_counter() - started:.1f}s; {args.stacks} stacks x "
            f"{args.services} services configured"
        )
        time.sleep(1.5)  # let the "exit 0" ones exit

        docker_requests = []
        shared = client_for(env)
        shared.api.hooks["response"].append(
            lambda r, *a, **k: docker_requests.append(r.request.path_url)
        )
        viewer, operator = Client(), Client()
        viewer.force_login(users["viewer"])
        operator.force_login(users["operator"])
        page = reverse("stacks:environment_detail", args=[env.name])
        status_url = reverse("stacks:environment_status", args=[env.name])
        rows = [
            ("environment page, viewer", viewer, page),
            ("environment page, operator (buttons by state)", operator, page),
            ("status JSON", viewer, status_url),
        ]
        results = [
            (name, measure(http, url, docker_requests, args.requests))
            for name, http, url in rows
        ]
        summary = viewer.get(status_url).json()["summary"]
        print(
            f"status: {summary['running']} of {summary['services']} services running, "
            f"{summary['containers']} containers"
        )
        print()
        print(
            "| endpoint | requests | median ms | p95 ms | max ms | SQL queries "
            "| Docker API requests | bytes |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in results:
            print(
                f"| {name} | {args.requests} | {r['median']:.1f} | {r['p95']:.1f} | "
                f"{r['max']:.1f} | {r['queries']} | {r['docker']} | {r['bytes']} |"
            )
    finally:
        removed = remove_containers(engine, run)
        print(f"\nremoved {removed} containers")
        engine.close()
        connection.close()
        DB.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

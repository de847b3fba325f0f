"""The credential check: rules, the environment check, starts, command, page.

Environments here are copies of ``demo`` whose secrets come from the values
the leak check planted in the test process (``settings.process_variables``
names them; ``tests/leakcheck.py``), so they resolve the production way and
the session-wide check watches every output they reach. A test that needs
a bad value writes it in the environment's own file,
``<PORTAL_CONFIG_DIR>/env/<name>.env`` (a folder of the test's own, with
copies of the real example files).
"""

import json
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backups.models import BackupPolicy
from portal.choices import OperationStatus, Role
from portal.models import AuditEntry
from stacks import engine
from stacks.config import import_configs, published_ports
from stacks.credentials import ERROR, OK, WARNING, check_environment
from stacks.credentials.rules import Policy, evaluate
from stacks.credentials.usage import Use
from stacks.models import Environment, Service, ServiceOverride, Stack
from stacks.operations import restart_stack, start_stack
from tests.conftest import RUN_ID, TEST_LABEL
from tests.leakcheck import planted
from tests.stacks.live import make_user  # noqa: F401,F811 (a fixture)

REAL_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
POSTGRES_USERS = (
    "postgres, litellm, multimodal-worker, retrieval-proxy, ai-agents, "
    "search-engine, memory-system, user-management, n8n-monitoring"
)


# --------------------------------------------------------------------------
# World


@pytest.fixture
def config_dir(settings, tmp_path):
    """Import the real configuration, then use a folder of this test's own."""
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    import_configs()
    folder = tmp_path / "configs"
    (folder / "env").mkdir(parents=True)
    for example in (REAL_CONFIGS / "env").glob("*.env.example"):
        shutil.copy(example, folder / "env")
    settings.PORTAL_CONFIG_DIR = folder
    return folder


@pytest.fixture
def secrets():
    """The planted values: ``{variable: value}``."""
    values = planted()
    assert "POSTGRES_PASSWORD" in values and "BACKUP_REPOSITORY_PASSWORD" in values
    return values


@pytest.fixture
def make_env(config_dir, secrets):
    """Return a function making a copy of demo whose secrets are the planted ones.

    ``file`` is written to the environment's env file (it wins over the
    planted values); ``unset`` names planted variables it does not read.
    """
    demo = Environment.objects.get(name="demo")
    made = []

    def make(
        suffix="", *, protected=False, file=None, unset=(), subnet_pool="", offset=0
    ):
        name = f"t{RUN_ID}c{suffix}{len(made)}"
        settings = dict(demo.settings)
        settings["variables"] = {
            k: v for k, v in demo.settings["variables"].items() if k not in secrets
        }
        settings["process_variables"] = [n for n in secrets if n not in unset]
        env = Environment.objects.create(
            name=name,
            description=f"credential test copy of demo ({RUN_ID})",
            docker_host=demo.docker_host,
            protected=protected,
            subnet_pool=subnet_pool,
            port_offset=offset,
            bind_address=demo.bind_address,
            gpu_enabled=demo.gpu_enabled,
            settings=settings,
        )
        for override in demo.service_overrides.all():
            ServiceOverride.objects.create(
                environment=env, service=override.service, values=override.values
            )
        if file is not None:
            lines = [f"{k}={v}" for k, v in file.items()]
            (config_dir / "env" / f"{name}.env").write_text("\n".join(lines) + "\n")
        made.append(env)
        return env

    return make


def status_of(report, variable):
    return next(v for v in report.variables if v.variable == variable)


def stack(name):
    return Stack.objects.get(name=name)


# --------------------------------------------------------------------------
# Rules (no database)


def policy(**overrides):
    values = {"protected": True, "min_length": 16, "known_values": frozenset()}
    values.update(overrides)
    return Policy(**values)


def use(variable, user="app", **fields):
    fields.setdefault("secret", False)
    fields.setdefault("required", True)
    return Use(variable, user, fields.pop("field", "environment"), **fields)


def test_rules_judge_each_problem_without_the_value():
    uses = [
        use("DB_PASSWORD", "db"),
        use("DB_PASSWORD", "api"),
        use("API_TOKEN", "api"),
        use("CACHE_KEY", "cache"),
        use("SHORT_SECRET", "api"),
        use("EMPTY_SECRET", "api"),
        use("HOST", "api"),
        use("DEFAULTED_PASSWORD", "api", required=False, default="hunter2hunter2"),
        use("PORT", "api", required=False, default="80"),
    ]
    environ = {
        "DB_PASSWORD": "Pa55-word-that-is-long",
        "API_TOKEN": "changeme",
        "CACHE_KEY": "Pa55-word-that-is-long",
        "SHORT_SECRET": "x7#kQ",
        "EMPTY_SECRET": "",
    }
    statuses = {
        s.variable: s
        for s in evaluate(
            uses,
            environ,
            policy(known_values=frozenset({"changeme"})),
            user_order=["db", "cache", "api"],
        )
    }
    assert statuses["DB_PASSWORD"].users == ["db", "api"]
    assert statuses["DB_PASSWORD"].messages == [
        "DB_PASSWORD has the same value as CACHE_KEY (used by cache) (used by db, api)"
    ]
    assert statuses["CACHE_KEY"].messages == [
        "CACHE_KEY has the same value as DB_PASSWORD (used by db, api) (used by cache)"
    ]
    assert statuses["API_TOKEN"].messages == [
        "API_TOKEN is a well-known value (a common default, or written in the "
        "configuration or an example env file) (used by api)"
    ]
    assert statuses["SHORT_SECRET"].messages == [
        "SHORT_SECRET is shorter than 16 characters (used by api)"
    ]
    assert statuses["EMPTY_SECRET"].messages == ["EMPTY_SECRET is empty (used by api)"]
    assert statuses["HOST"].messages == ["HOST is not set (used by api)"]
    assert statuses["HOST"].credential is False
    assert statuses["DEFAULTED_PASSWORD"].messages == [
        "DEFAULTED_PASSWORD is not set, so the default written in the "
        "configuration is used (used by api)"
    ]
    assert statuses["PORT"].level == OK and not statuses["PORT"].problems
    assert {s.level for s in statuses.values() if s.problems} == {ERROR}
    text = json.dumps([s.messages for s in statuses.values()])
    for value in environ.values():
        assert not value or value not in text


def test_rules_warn_where_not_protected_and_allow_named_empty_values():
    uses = [use("SMTP_PASSWORD"), use("OTHER_PASSWORD")]
    statuses = evaluate(
        uses,
        {"SMTP_PASSWORD": "", "OTHER_PASSWORD": ""},
        policy(protected=False, allow_empty=frozenset({"SMTP_PASSWORD"})),
    )
    assert [(s.variable, s.level) for s in statuses] == [
        ("SMTP_PASSWORD", OK),
        ("OTHER_PASSWORD", WARNING),
    ]


def test_rules_variable_a_secret_field_refers_to_is_a_credential():
    """MINIO_ACCESS_KEY: ${MINIO_ROOT_USER} makes MINIO_ROOT_USER a credential."""
    uses = [use("MINIO_ROOT_USER", "worker", secret=True), use("LOG_LEVEL")]
    statuses = evaluate(uses, {"MINIO_ROOT_USER": "admin", "LOG_LEVEL": "x"}, policy())
    assert statuses[0].credential and statuses[0].problems[0].kind == "short"
    assert not statuses[1].credential and not statuses[1].problems


def test_rules_same_value_for_the_same_services_is_not_reported():
    """Two keys of one service share no secret with another service."""
    value = "a-long-enough-value-1234"
    uses = [use("LITELLM_MASTER_KEY", "litellm"), use("LITELLM_SALT_KEY", "litellm")]
    statuses = evaluate(
        uses, {"LITELLM_MASTER_KEY": value, "LITELLM_SALT_KEY": value}, policy()
    )
    assert all(s.level == OK for s in statuses)


def test_rules_empty_where_the_reference_requires_a_value():
    uses = [use("TOKEN", nonempty=True)]
    (status,) = evaluate(uses, {"TOKEN": ""}, policy(allow_empty={"TOKEN"}))
    assert status.messages == ["TOKEN is empty (used by app)"]


# --------------------------------------------------------------------------
# The environment check


@pytest.mark.django_db
def test_planted_secrets_pass_in_a_protected_environment(make_env, secrets):
    env = make_env(protected=True)
    report = check_environment(env)
    assert report.errors == [] and report.warnings == []
    assert report.level == OK and not report.refused
    postgres = status_of(report, "POSTGRES_PASSWORD")
    assert postgres.credential and postgres.users == POSTGRES_USERS.split(", ")
    assert status_of(report, "MINIO_ROOT_USER").credential
    assert not status_of(report, "POSTGRES_USER").credential


@pytest.mark.django_db
@pytest.mark.parametrize(
    "file, unset, variable, message, value",
    [
        (
            {},
            ("POSTGRES_PASSWORD",),
            "POSTGRES_PASSWORD",
            f"POSTGRES_PASSWORD is not set (used by {POSTGRES_USERS})",
            None,
        ),
        (
            {"MINIO_ROOT_PASSWORD": "minioadmin"},
            (),
            "MINIO_ROOT_PASSWORD",
            "MINIO_ROOT_PASSWORD is a well-known value (a common default, or "
            "written in the configuration or an example env file) (used by minio, "
            "multimodal-worker, retrieval-proxy)",
            "minioadmin",
        ),
        (
            {"JWT_SECRET_KEY": "Zq7x9Kp2"},
            (),
            "JWT_SECRET_KEY",
            "JWT_SECRET_KEY is shorter than 16 characters (used by user-management)",
            "Zq7x9Kp2",
        ),
    ],
    ids=["missing", "default", "short"],
)
def test_problem_is_an_error_in_production_and_a_warning_in_development(
    make_env, file, unset, variable, message, value
):
    production = make_env("p", protected=True, file=file, unset=unset)
    development = make_env("d", protected=False, file=file, unset=unset)
    refused = check_environment(production)
    assert refused.errors == [message] and refused.refused
    assert status_of(refused, variable).level == ERROR
    warned = check_environment(development)
    assert warned.errors == [] and warned.warnings == [message]
    assert not warned.refused and status_of(warned, variable).level == WARNING
    if value:
        assert value not in json.dumps(refused.as_dict())
        assert value not in refused.refusal()


@pytest.mark.django_db
def test_values_of_the_examples_and_the_configuration_are_well_known(
    make_env, config_dir
):
    (config_dir / "env" / "extra.env.example").write_text(
        "# an example someone might copy\n# N8N_API_KEY=an-example-value-long-enough\n"
    )
    env = make_env(
        protected=True,
        file={
            "N8N_API_KEY": "an-example-value-long-enough",
            # demo's settings.variables (configs/stacks.yaml) are public.
            "WEBUI_SECRET_KEY": "demo-webui-secret",
        },
    )
    report = check_environment(env)
    assert [p.kind for p in status_of(report, "N8N_API_KEY").problems] == ["known"]
    assert [p.kind for p in status_of(report, "WEBUI_SECRET_KEY").problems] == ["known"]


@pytest.mark.django_db
def test_reuse_between_services_and_backup_tiers_is_an_error(make_env, secrets):
    """A service that reads the postgres password would hold the repository's."""
    env = make_env(
        protected=True,
        file={"BACKUP_REPOSITORY_PASSWORD": secrets["POSTGRES_PASSWORD"]},
    )
    BackupPolicy.objects.create(environment=env, tiers=["local", "cloud"])
    report = check_environment(env)
    backup = status_of(report, "BACKUP_REPOSITORY_PASSWORD")
    assert backup.users == ["backup tier local", "backup tier cloud"]
    assert backup.messages == [
        "BACKUP_REPOSITORY_PASSWORD has the same value as POSTGRES_PASSWORD (used "
        f"by {POSTGRES_USERS}) (used by backup tier local, backup tier cloud)"
    ]
    assert status_of(report, "BACKUP_S3_SECRET_KEY").users == ["backup tier cloud"]
    assert status_of(report, "BACKUP_S3_SECRET_KEY").level == OK
    # A start of core checks core's variables: the reuse is named there too.
    core = check_environment(env, stacks=[stack("core")])
    assert core.errors == [
        "POSTGRES_PASSWORD has the same value as BACKUP_REPOSITORY_PASSWORD (used "
        f"by backup tier local, backup tier cloud) (used by {POSTGRES_USERS})"
    ]
    assert "BACKUP_REPOSITORY_PASSWORD" not in {v.variable for v in core.variables}


@pytest.mark.django_db
def test_empty_credential_unless_the_environment_allows_it(make_env):
    env = make_env(protected=True, file={"SMTP_PASSWORD": "", "WEBUI_SECRET_KEY": ""})
    report = check_environment(env)
    assert report.errors == ["WEBUI_SECRET_KEY is empty (used by openwebui)"]
    env.settings = {**env.settings, "credentials": {"min_length": 40}}
    env.save()
    report = check_environment(env)
    assert "SMTP_PASSWORD is empty (used by n8n-monitoring)" in report.errors
    # The planted values have 39 characters.
    assert (
        "JWT_SECRET_KEY is shorter than 40 characters (used by user-management)"
        in report.errors
    )


@pytest.mark.django_db
def test_check_reads_a_constant_number_of_queries(
    make_env, django_assert_max_num_queries
):
    """Services, dependencies, overrides, environments, policy, tiers."""
    env = make_env(protected=True)
    BackupPolicy.objects.create(environment=env, tiers=["local", "remote"])
    assert Service.objects.count() > 20
    with django_assert_max_num_queries(6):
        check_environment(env)


# --------------------------------------------------------------------------
# Starts (a real worker, the real engine)


def run(operation, run_jobs):
    run_jobs("default")
    operation.refresh_from_db()
    return operation


def lines(operation):
    return "\n".join(operation.lines.order_by("seq").values_list("text", flat=True))


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser(f"cred-op-{RUN_ID}")


def free_world(docker_client):
    from tests.stacks.test_lifecycle import free_offset, free_pool

    demo = Environment.objects.get(name="demo")
    base_ports = {
        p.published - demo.port_offset
        for service in Service.objects.filter(stack__name="core")
        for p in published_ports(service, demo)
        if p.published is not None
    }
    return free_pool(docker_client), free_offset(base_ports)


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "stack_name, file, unset, fragment, value",
    [
        ("core", {}, ("POSTGRES_PASSWORD",), "POSTGRES_PASSWORD is not set", None),
        (
            "core",
            {"MINIO_ROOT_PASSWORD": "minioadmin"},
            (),
            "MINIO_ROOT_PASSWORD is a well-known value",
            "minioadmin",
        ),
        (
            "ai",
            {"JWT_SECRET_KEY": "Zq7x9Kp2"},
            (),
            "JWT_SECRET_KEY is shorter than 16 characters (used by user-management)",
            "Zq7x9Kp2",
        ),
    ],
    ids=["missing", "default", "short"],
)
def test_start_in_protected_environment_is_refused_naming_the_variable(
    docker_client,
    make_env,
    operator,
    run_jobs,
    stack_name,
    file,
    unset,
    fragment,
    value,
):
    env = make_env(protected=True, file=file, unset=unset)
    operation = run(start_stack(env, stack(stack_name), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    assert operation.error.startswith(
        f"Refused: 1 credential problem(s) in protected environment {env.name}: "
        f"{fragment}"
    )
    assert operation.error.endswith(
        f"Set the variables in configs/env/{env.name}.env where the worker runs "
        f"(manage.py check_credentials --env {env.name} checks every variable)."
    )
    if value:
        assert value not in operation.error and value not in lines(operation)
    # Refused first: before the dependency check (ai's are not running) and
    # before anything was created.
    assert "depends on stacks" not in operation.error
    assert (
        engine.service_states(docker_client, env.project_name(stack(stack_name))) == {}
    )
    assert not docker_client.networks.list(
        filters={"label": f"portal.environment={env.name}"}
    )


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_same_values_in_development_only_warn_and_the_start_goes_on(
    docker_client, make_env, operator, run_jobs
):
    pool, offset = free_world(docker_client)
    env = make_env(
        protected=False,
        file={"MINIO_ROOT_PASSWORD": "minioadmin", "MINIO_ROOT_USER": "Zq7x9Kp2"},
        subnet_pool=pool,
        offset=offset,
    )
    operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    warnings = list(
        operation.lines.filter(level="warning").values_list("text", flat=True)
    )
    assert warnings == [
        "Credentials: MINIO_ROOT_USER is shorter than 16 characters (used by minio, "
        "multimodal-worker, retrieval-proxy)",
        "Credentials: MINIO_ROOT_PASSWORD is a well-known value (a common default, "
        "or written in the configuration or an example env file) (used by minio, "
        "multimodal-worker, retrieval-proxy)",
    ]
    text = lines(operation)
    assert "minioadmin" not in text and "Zq7x9Kp2" not in text
    minio = engine.service_states(docker_client, env.project_name(stack("core")))
    assert minio["minio"].ready


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_missing_variable_in_development_warns_then_fails_resolving(
    docker_client, make_env, operator, run_jobs
):
    env = make_env(protected=False, unset=("POSTGRES_PASSWORD",))
    operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    first = operation.lines.filter(level="warning").first()
    assert first.text == (
        f"Credentials: POSTGRES_PASSWORD is not set (used by {POSTGRES_USERS})"
    )
    # Not refused by the check: the resolution of the variable fails.
    assert operation.error.startswith(
        "Cannot resolve the environment: variable POSTGRES_PASSWORD is not set "
        "(service postgres)"
    )


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_planted_secrets_reach_the_container_and_a_bad_one_refuses_a_restart(
    docker_client, make_env, operator, run_jobs, config_dir, secrets
):
    pool, offset = free_world(docker_client)
    env = make_env(protected=True, subnet_pool=pool, offset=offset)
    operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert "Credentials: 11 variable(s) of core checked, no problems" in lines(
        operation
    )
    project = env.project_name(stack("core"))
    states = engine.service_states(docker_client, project)
    inspect = docker_client.api.inspect_container(states["postgres"].id)
    # The planted value went the production way into the container (and the
    # session-wide check makes sure it went nowhere else).
    assert (
        f"POSTGRES_PASSWORD={secrets['POSTGRES_PASSWORD']}"
        in (inspect["Config"]["Env"])
    )

    (config_dir / "env" / f"{env.name}.env").write_text("MINIO_ROOT_PASSWORD=secret\n")
    restart = run(restart_stack(env, stack("core"), user=operator), run_jobs)
    assert restart.status == OperationStatus.FAILED
    assert "MINIO_ROOT_PASSWORD is a well-known value" in restart.error
    # Refused before anything stopped.
    after = engine.service_states(docker_client, project)
    assert {name: s.id for name, s in after.items()} == {
        name: s.id for name, s in states.items()
    }
    assert all(s.ready for s in after.values())


# --------------------------------------------------------------------------
# The command


def check(*args, user=None):
    from io import StringIO

    out = StringIO()
    if user:
        args = (*args, "--user", user)
    call_command("check_credentials", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def ops(db):
    return get_user_model().objects.create_superuser(f"cred-cmd-{RUN_ID}")


@pytest.mark.django_db
def test_command_refuses_with_exit_1_naming_variables_and_users(make_env, ops):
    env = make_env(
        protected=True, file={"JWT_SECRET_KEY": "Zq7x9Kp2"}, unset=("N8N_PASSWORD",)
    )
    with pytest.raises(CommandError) as excinfo:
        check("--env", env.name, user=ops.username)
    assert excinfo.value.returncode == 1
    assert str(excinfo.value) == f"2 credential error(s) in {env.name}."
    entry = AuditEntry.objects.filter(action="credentials.checked").get()
    assert entry.environment_name == env.name and entry.actor_name == ops.username
    assert entry.data["problems"] == [
        {"variable": "JWT_SECRET_KEY", "level": "error", "kinds": ["short"]},
        {"variable": "N8N_PASSWORD", "level": "error", "kinds": ["missing"]},
    ]
    assert entry.data["refused"] is True


@pytest.mark.django_db
def test_command_prints_every_variable_and_never_a_value(make_env, ops, secrets):
    from io import StringIO

    env = make_env(protected=True, file={"JWT_SECRET_KEY": "Zq7x9Kp2"})
    out = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "check_credentials", "--env", env.name, "--user", ops.username, stdout=out
        )
    text = out.getvalue()
    *table, error, summary = text.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in table}
    assert rows["POSTGRES_PASSWORD"][:4] == ["ok", "credential", "used", "by"]
    assert rows["JWT_SECRET_KEY"] == [
        "error",
        "credential",
        "used",
        "by",
        "user-management",
    ]
    assert rows["POSTGRES_USER"][:2] == ["ok", "variable"]
    assert error == (
        "error: JWT_SECRET_KEY is shorter than 16 characters (used by user-management)"
    )
    assert summary == (
        f"Credentials of {env.name}: 46 variable(s), 1 with errors, 0 with warnings, "
        "45 ok; a start is refused."
    )
    assert "Zq7x9Kp2" not in text
    assert not any(value in text for value in secrets.values())


@pytest.mark.django_db
def test_command_warnings_exit_0_unless_strict(make_env, ops):
    env = make_env(protected=False, file={"MINIO_ROOT_PASSWORD": "password"})
    text = check("--env", env.name, "-v", "0", user=ops.username)
    assert text.splitlines() == [
        "warning: MINIO_ROOT_PASSWORD is a well-known value (a common default, or "
        "written in the configuration or an example env file) (used by minio, "
        "multimodal-worker, retrieval-proxy)",
        f"Credentials of {env.name}: 46 variable(s), 0 with errors, 1 with warnings, "
        "45 ok; not protected: problems are warnings.",
    ]
    with pytest.raises(CommandError) as excinfo:
        check("--env", env.name, "--strict", user=ops.username)
    assert excinfo.value.returncode == 1
    assert str(excinfo.value) == f"1 credential warning(s) (--strict) in {env.name}."


@pytest.mark.django_db
def test_command_json_and_stack_scope(make_env, ops):
    env = make_env(protected=True, file={"JWT_SECRET_KEY": "Zq7x9Kp2"})
    data = json.loads(
        check("--env", env.name, "--stack", "core", "--json", user=ops.username)
    )
    assert data["stacks"] == ["core"] and data["level"] == "ok"
    assert {v["variable"] for v in data["variables"] if v["credential"]} == {
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
    }


@pytest.mark.django_db
def test_command_cannot_check_exits_2(make_env, ops, make_user, config_dir):  # noqa: F811
    env = make_env(protected=True)
    viewer = make_user(f"cred-viewer-{RUN_ID}", Role.VIEWER, env)
    cases = [
        (("--env", "nowhere"), ops.username, "No environment 'nowhere'."),
        (
            ("--env", env.name),
            viewer.username,
            f"{viewer.username} may not run checks in environment {env.name}.",
        ),
        (("--env", env.name, "--stack", "nope"), ops.username, "No stack nope."),
    ]
    for args, user, message in cases:
        with pytest.raises(CommandError) as excinfo:
            check(*args, user=user)
        assert excinfo.value.returncode == 2
        assert str(excinfo.value).startswith(message)
    (config_dir / "env" / f"{env.name}.env").write_bytes(
        b"A=1\nJWT_SECRET_KEY=caf\xe9\n"
    )
    with pytest.raises(CommandError) as excinfo:
        check("--env", env.name, user=ops.username)
    assert excinfo.value.returncode == 2
    assert f"{env.name}.env:2: not valid UTF-8" in str(excinfo.value)


def test_make_targets_call_the_command():
    import subprocess

    root = REAL_CONFIGS.parent
    result = subprocess.run(
        [
            "make",
            "-n",
            "validate-credentials",
            "ENVIRONMENT=staging",
            "PORTAL_USER=ops",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == (
        ".venv/bin/python manage.py check_credentials --env staging --user ops".split()
    )
    result = subprocess.run(
        ["make", "-n", "validate-credentials-prod"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == (
        ".venv/bin/python manage.py check_credentials --env prod --strict".split()
    )


# --------------------------------------------------------------------------
# The environment page


@pytest.fixture
def page_world(make_env, make_user):  # noqa: F811
    env = make_env(protected=True, file={"JWT_SECRET_KEY": "Zq7x9Kp2"})
    other = make_env("o")
    users = {
        "viewer": make_user(f"cv-{RUN_ID}", Role.VIEWER, env),
        "operator": make_user(f"co-{RUN_ID}", Role.OPERATOR, env),
        "elsewhere": make_user(f"ce-{RUN_ID}", Role.OPERATOR, other),
        "nobody": make_user(f"cn-{RUN_ID}"),
    }
    return env, users


@pytest.mark.docker
@pytest.mark.django_db
def test_page_anonymous_and_without_role(client, page_world):
    env, users = page_world
    url = reverse("stacks:environment_detail", args=[env.name])
    assert client.get(url).status_code == 302
    client.force_login(users["nobody"])
    assert client.get(url).status_code == 403
    client.force_login(users["elsewhere"])
    assert client.get(url).status_code == 403


@pytest.mark.docker
@pytest.mark.django_db
def test_page_viewer_sees_the_status_not_the_variables(client, page_world):
    env, users = page_world
    client.force_login(users["viewer"])
    html = client.get(reverse("stacks:environment_detail", args=[env.name])).content
    html = html.decode()
    assert 'data-credentials="error"' in html
    assert "1 with errors" in html
    assert 'data-variable="JWT_SECRET_KEY"' not in html
    assert "shown to users who may run checks" in html


@pytest.mark.docker
@pytest.mark.django_db
def test_page_operator_sees_each_credential_and_no_value(client, page_world, secrets):
    env, users = page_world
    client.force_login(users["operator"])
    html = client.get(reverse("stacks:environment_detail", args=[env.name])).content
    html = html.decode()
    assert 'data-variable="JWT_SECRET_KEY" data-level="error"' in html
    assert "is shorter than 16 characters" in html
    assert 'data-variable="POSTGRES_PASSWORD" data-level="ok"' in html
    # Variables that are neither credentials nor wrong are left out.
    assert 'data-variable="POSTGRES_PORT"' not in html
    assert "Zq7x9Kp2" not in html
    assert not any(value in html for value in secrets.values())


@pytest.mark.docker
@pytest.mark.django_db
def test_page_names_an_unreadable_env_file(client, page_world, config_dir):
    env, users = page_world
    (config_dir / "env" / f"{env.name}.env").write_bytes(b"A=\xff\n")
    client.force_login(users["operator"])
    html = client.get(reverse("stacks:environment_detail", args=[env.name])).content
    assert b'data-credentials="unreadable"' in html
    assert f"{env.name}.env:1: not valid UTF-8".encode() in html

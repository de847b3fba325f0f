"""Hard-coded secrets: the rules, the scanner (files, rendered compose, the
database) and the import error where one reaches a protected environment.

Every finding names the file, the line and the key path, never the value.
"""

import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.models import AuditEntry
from stacks.config import import_configs, validate_configs
from stacks.credentials import scan
from stacks.models import Environment, Service, ServiceOverride
from stacks.schema.literals import in_arguments, in_field, in_text

from .test_config_support import CONFIG_DIR, line_of, minimal, write_config
from .test_config_validation import errors_of

# Values in well-known formats, made up (none is a real credential).
TOKENS = {
    "an AWS access key id": "AKIA" + "Q" * 16,
    "a GitHub token": "ghp_" + "a1" * 18,
    "a GitLab token": "glpat-" + "x" * 20,
    "a Slack token": "xoxb-" + "1234567890-abc",
    "a Slack webhook URL": "https://hooks.slack.com/services/T0A/B0B/abcdefXYZ",
    "a Hugging Face token": "hf_" + "Ab" * 16,
    "a Google API key": "AIza" + "B" * 35,
    "a Stripe secret key": "sk_live_" + "c" * 20,
    "an API key (sk-...)": "sk-" + "d" * 24,
    "a JSON Web Token": "eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl",
}
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRET_FIELD = (
    "a literal value in a secret field (write a ${VAR} reference and set the "
    "variable in configs/env/<environment>.env)"
)


# --------------------------------------------------------------------------
# Rules


@pytest.mark.parametrize("what", sorted(TOKENS))
def test_token_formats_are_found_in_any_text(what):
    found = in_text(f"value: {TOKENS[what]} # note")
    assert [f.what for f in found] == [f"what looks like {what}"]


def test_private_keys_and_passwords_in_urls_are_found():
    assert [f.kind for f in in_text(PRIVATE_KEY)] == ["private-key"]
    assert [f.kind for f in in_text("postgres://app:hunter22@db:5432/x")] == [
        "url-password"
    ]
    # References are not secrets, with or without a user default.
    assert in_text("postgresql://${USER:-postgres}:${PASSWORD}@db/x") == []
    assert in_text("https://localhost:5678/healthz") == []


@pytest.mark.parametrize(
    "name, value, kinds",
    [
        ("POSTGRES_PASSWORD", "hunter2", ["secret-field"]),
        ("api_key", 12345, ["secret-field"]),
        ("POSTGRES_PASSWORD", "${POSTGRES_PASSWORD}", []),
        ("POSTGRES_PASSWORD", "$POSTGRES_PASSWORD", []),
        ("POSTGRES_PASSWORD", "${PW:-changeme}", ["secret-default"]),
        ("POSTGRES_PASSWORD", "${PW:-}", []),
        ("POSTGRES_PASSWORD", "", []),
        ("SMTP_PASSWORD_FILE", "/run/secrets/smtp", []),
        ("N8N_BASIC_AUTH_ACTIVE", True, []),
        ("encryption_key_rotation", False, []),
        ("DATABASE_URL", "postgres://u:${PW}@db/x", []),
        ("LOG_LEVEL", "info", []),
    ],
)
def test_secret_fields_need_references(name, value, kinds):
    assert [f.kind for f in in_field(name, value)] == kinds


def test_secret_options_in_commands():
    assert [
        (i, f.what)
        for i, f in in_arguments(["--model", "m", "--api-key", "abcdefgh", "--x"])
    ] == [(2, "a literal value after the secret option --api-key")]
    assert in_arguments(["--api-key", "${VLLM_API_KEY}"]) == []
    assert in_arguments(["--ssl-keyfile", "/certs/key.pem"]) == []
    assert [f.kind for _, f in in_arguments("redis-server --requirepass s3cret")] == [
        "secret-option"
    ]
    assert [f.kind for _, f in in_arguments(["--password=abc123"])] == ["secret-option"]


# --------------------------------------------------------------------------
# The scanner on files


@pytest.fixture
def configs_copy(tmp_path):
    """A copy of configs/ to plant secrets in."""
    folder = tmp_path / "configs"
    shutil.copytree(
        CONFIG_DIR, folder, ignore=shutil.ignore_patterns("*.env", "busybox")
    )
    return folder


def replace_line(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return line_of(path, new.strip().splitlines()[0])


def test_real_configuration_holds_no_unallowed_secret():
    report = scan([CONFIG_DIR], database=False)
    assert report.reported == [], [str(f) for f in report.reported]
    # The demo's public values are allowed by the comment on their block.
    assert {f.path.rsplit(".", 1)[0] for f in report.allowed} == {
        "environments.demo.settings.variables"
    }
    assert "configs/stacks.yaml" in report.files


def test_literal_password_planted_in_a_config_file_is_found_with_file_and_line(
    configs_copy,
):
    stacks = configs_copy / "stacks.yaml"
    line = replace_line(
        stacks,
        '      N8N_BASIC_AUTH_PASSWORD: "${N8N_PASSWORD}"\n',
        "      N8N_BASIC_AUTH_PASSWORD: n8n-pass-Zq7x\n",
    )
    report = scan([configs_copy], database=False)
    shown = [str(f) for f in report.reported]
    assert shown == [
        f"{stacks}:{line}: services.n8n.environment.N8N_BASIC_AUTH_PASSWORD: "
        f"{SECRET_FIELD}"
    ]
    assert "n8n-pass-Zq7x" not in shown[0]


def test_each_kind_of_file_is_read_its_own_way(configs_copy):
    (configs_copy / "images" / "postgres" / "Dockerfile").write_text(
        "FROM scratch\nENV POSTGRES_PASSWORD=hunter22 POSTGRES_DB=app\n"
        "ARG TOKEN ${TOKEN}\n"
    )
    (configs_copy / "images" / "httpstub" / "deploy_key").write_text(PRIVATE_KEY)
    (configs_copy / "env" / "staging.env.example").write_text(
        "# JWT_SECRET_KEY=commented-out examples are not values\n"
        "JWT_SECRET_KEY=a-real-value-here\nexport HF_TOKEN='"
        + "hf_"
        + "Ab" * 16
        + "'\n"
    )
    (configs_copy / "env" / "staging.env").write_text(
        "JWT_SECRET_KEY=where-it-belongs\n"
    )
    (configs_copy / "notes.txt").write_text(f"deploy with {TOKENS['a GitHub token']}\n")
    report = scan([configs_copy], database=False)
    shown = sorted(str(f) for f in report.reported)
    images = configs_copy / "images"
    env = configs_copy / "env"
    assert shown == sorted(
        [
            f"{images}/postgres/Dockerfile:2: POSTGRES_PASSWORD: {SECRET_FIELD}",
            f"{images}/httpstub/deploy_key:1: a private key",
            f"{env}/staging.env.example:2: JWT_SECRET_KEY: {SECRET_FIELD}",
            f"{env}/staging.env.example:3: HF_TOKEN: {SECRET_FIELD}",
            f"{env}/staging.env.example:3: HF_TOKEN: what looks like a Hugging Face "
            "token",
            f"{configs_copy}/notes.txt:1: what looks like a GitHub token",
        ]
    )
    # The real env file is where secrets belong: skipped in a folder...
    assert any("staging.env (an environment file" in s for s in report.skipped)
    # ... but read when named.
    named = scan([env / "staging.env"], database=False)
    assert [f.path for f in named.reported] == ["JWT_SECRET_KEY"]


def test_allow_comment_on_a_line_or_a_block(configs_copy, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "a:\n"
        "  PASSWORD: one  # scan-secrets: allow (a test fixture)\n"
        "  TOKEN: two\n"
        "b:  # scan-secrets: allow (demo values)\n"
        "  SECRET: three\n"
        "  nested:\n"
        "    API_KEY: four\n"
        "c:\n"
        "  SALT: five\n"
    )
    report = scan([path], database=False)
    assert [(f.line, f.path, f.allowed) for f in report.findings] == [
        (2, "a.PASSWORD", True),
        (3, "a.TOKEN", False),
        (5, "b.SECRET", True),
        (7, "b.nested.API_KEY", True),
        (9, "c.SALT", False),
    ]


def test_unreadable_yaml_is_searched_line_by_line_and_reported(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(f"a: [\ntoken: {TOKENS['a Slack token']}\n")
    report = scan([path, tmp_path / "missing.yaml"], database=False)
    assert [(f.line, f.kind) for f in report.reported] == [(2, "token")]
    assert report.problems[0].startswith(f"{path}:")
    assert report.problems[1] == f"{tmp_path / 'missing.yaml'}: no such file or folder"


# --------------------------------------------------------------------------
# Rendered compose files and the database


@pytest.mark.django_db
def test_rendered_compose_and_an_override_edited_in_the_database(tmp_path, settings):
    import_configs()
    assert scan([tmp_path], database=True).reported == []
    staging = Environment.objects.get(name="staging")
    ServiceOverride.objects.create(
        environment=staging,
        service=Service.objects.get(name="openwebui"),
        values={"environment": {"WEBUI_SECRET_KEY": "typed-in-the-admin-1"}},
    )
    call_command(
        "render_compose",
        "--env",
        "staging",
        "--stack",
        "ui",
        "--output",
        str(tmp_path / "rendered"),
        stdout=StringIO(),
    )
    rendered = tmp_path / "rendered" / "compose.ui.yml"
    report = scan([tmp_path / "rendered"], database=True)
    line = line_of(rendered, "WEBUI_SECRET_KEY: typed-in-the-admin-1")
    assert sorted(str(f) for f in report.reported) == sorted(
        [
            "database: environments.staging.overrides.openwebui.environment."
            f"WEBUI_SECRET_KEY: {SECRET_FIELD}",
            f"{rendered}:{line}: services.openwebui.environment.WEBUI_SECRET_KEY: "
            f"{SECRET_FIELD}",
        ]
    )


@pytest.mark.django_db
def test_command_exit_codes_and_audit(tmp_path, settings):
    import_configs()
    out = StringIO()
    call_command("scan_secrets", stdout=out)
    assert out.getvalue().splitlines()[-1].startswith("Scanned ")
    assert "0 hard-coded secret(s), 15 allowed" in out.getvalue()
    (tmp_path / "leak.yaml").write_text("services:\n  x:\n    PASSWORD: literal1\n")
    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("scan_secrets", str(tmp_path), "--no-database", stdout=out)
    assert excinfo.value.returncode == 1
    assert str(excinfo.value) == "1 hard-coded secret(s) found."
    assert f"{tmp_path / 'leak.yaml'}:3: services.x.PASSWORD: " in out.getvalue()
    assert "literal1" not in out.getvalue()
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "scan_secrets", str(tmp_path / "nope"), stdout=StringIO(), stderr=StringIO()
        )
    assert excinfo.value.returncode == 2
    entries = list(AuditEntry.objects.filter(action="secrets.scanned").order_by("id"))
    assert [e.data["found_total"] for e in entries] == [0, 1, 0]
    assert entries[1].data["found"] == [
        f"{tmp_path / 'leak.yaml'}:3: services.x.PASSWORD: {SECRET_FIELD}"
    ]


def test_make_target_calls_the_command():
    import subprocess

    result = subprocess.run(
        ["make", "-n", "scan-secrets", "SCAN_ARGS=--no-database configs"],
        cwd=CONFIG_DIR.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == (
        ".venv/bin/python manage.py scan_secrets --no-database configs".split()
    )


# --------------------------------------------------------------------------
# At import: refused where a secret reaches a protected environment


def test_import_refuses_a_token_reaching_a_protected_environment(tmp_path):
    data = minimal()
    data["services"]["litellm"]["environment"]["SLACK_WEBHOOK_URL"] = TOKENS[
        "a Slack webhook URL"
    ]
    data["services"]["redis"]["command"] = "redis-server --requirepass s3cret-pw"
    path = write_config(tmp_path, data)
    text = errors_of(path)
    slack = line_of(path, "SLACK_WEBHOOK_URL:")
    redis = line_of(path, "command: redis-server")
    assert (
        f"{path}:{slack}: services.litellm.environment.SLACK_WEBHOOK_URL: what looks "
        "like a Slack webhook URL, which reaches protected environment production"
    ) in text
    assert (
        f"{path}:{redis}: services.redis.command: a literal value after the secret "
        "option --requirepass, which reaches protected environment production"
    ) in text
    assert "hooks.slack.com" not in text and "s3cret-pw" not in text


def test_import_refuses_a_literal_password_without_require_secret_refs(tmp_path):
    data = minimal()
    data["environments"]["production"]["require_secret_refs"] = False
    data["environments"]["staging"] = {
        "protected": True,
        "subnet_pool": "10.1.0.0/20",
        "port_offset": 20000,
    }
    data["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "pw-Zq7x9"
    path = write_config(tmp_path, data)
    line = line_of(path, "POSTGRES_PASSWORD: pw-Zq7x9")
    assert (
        f"{path}:{line}: services.postgres.environment.POSTGRES_PASSWORD: "
        f"{SECRET_FIELD}, which reaches protected environments production, staging"
    ) in errors_of(path)


def test_import_allows_an_override_of_another_environment_and_a_replaced_value(
    tmp_path,
):
    """Only what reaches a protected environment is refused at import."""
    data = minimal()
    data["environments"]["development"]["overrides"] = {
        "postgres": {"environment": {"POSTGRES_PASSWORD": "dev-only-pw"}}
    }
    data["services"]["redis"]["command"] = "redis-server --requirepass s3cret-pw"
    data["environments"]["production"]["overrides"] = {
        "redis": {"command": "redis-server --requirepass ${REDIS_PASSWORD}"}
    }
    validate_configs(write_config(tmp_path, data))


def test_import_names_a_credential_in_protected_settings_variables(tmp_path):
    data = minimal()
    data["services"]["litellm"]["environment"]["MINIO_ACCESS_KEY"] = (
        "${MINIO_ROOT_USER}"
    )
    data["environments"]["production"]["settings"] = {
        "variables": {"MINIO_ROOT_USER": "root-user", "POSTGRES_DB": "app"}
    }
    path = write_config(tmp_path, data)
    line = line_of(path, "MINIO_ROOT_USER: root-user")
    assert (
        f"{path}:{line}: environments.production.settings.variables.MINIO_ROOT_USER: "
        "a literal value for MINIO_ROOT_USER, which secret fields of services refer "
        "to (set it in configs/env/<environment>.env), which reaches protected "
        "environment production"
    ) in errors_of(path)


@pytest.mark.parametrize(
    "credentials, message",
    [
        ({"min_length": 0}, "min_length: expected a number of characters (1 or more)"),
        ({"min_length": "long"}, "min_length: expected a number of characters"),
        ({"allow_empty": "SMTP_PASSWORD"}, "allow_empty: expected a list"),
        ({"allow_empty": ["9X"]}, "allow_empty: invalid variable name '9X'"),
        ({"min_lenght": 20}, "min_lenght: unknown key 'min_lenght'"),
    ],
)
def test_settings_credentials_are_checked(tmp_path, credentials, message):
    data = minimal()
    data["environments"]["development"]["settings"] = {"credentials": credentials}
    path = write_config(tmp_path, data)
    assert f"environments.development.settings.credentials.{message}" in errors_of(path)


@pytest.mark.django_db
def test_admin_edit_putting_a_token_into_production_is_refused(client):
    """The admin's change goes through the importer's rules (the gate)."""
    from portal.choices import Role
    from tests.stacks.test_config_gate import form_errors, post_change, staff

    import_configs()
    client.force_login(staff("ada", Role.ADMIN))
    override = ServiceOverride.objects.get(
        environment__name="production", service__name="postgres"
    )
    token = TOKENS["a GitHub token"]
    # The command has its own field in the override's form.
    response = post_change(
        client, "serviceoverride", override, command=["postgres", "-c", f"x={token}"]
    )
    assert response.status_code == 200
    assert form_errors(response)["command"] == [
        "environments.production.overrides.postgres.command[2]: what looks like a "
        "GitHub token, which reaches protected environment production"
    ]
    override.refresh_from_db()
    assert "command" not in override.values
    # The same edit in a protected environment's neighbour is not an import
    # error; the scanner reports it.
    staging = ServiceOverride.objects.get(
        environment__name="staging", service__name="vllm"
    )
    response = post_change(
        client, "serviceoverride", staging, environment_variables=f"HF_TOKEN={token}"
    )
    assert response.status_code == 302, form_errors(response)
    staging.refresh_from_db()
    assert staging.values["environment"]["HF_TOKEN"] == token
    assert [f.path for f in scan([], database=True).reported] == [
        "environments.staging.overrides.vllm.environment.HF_TOKEN",
        "environments.staging.overrides.vllm.environment.HF_TOKEN",
    ]

"""Variable references: detection, resolution, redaction, environment files."""

import pytest

from portal.redaction import SECRET_NAME_RE, is_secret_name
from stacks.models import Environment
from stacks.secrets import (
    InvalidReference,
    MissingSecret,
    environ_for,
    invalid_references,
    is_reference,
    load_env_file,
    references,
    resolve,
    resolve_all,
)


@pytest.mark.parametrize(
    "name",
    [
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "LITELLM_MASTER_KEY",
        "LITELLM_SALT_KEY",
        "JWT_SECRET_KEY",
        "WEBUI_SECRET_KEY",
        "N8N_ENCRYPTION_KEY",
        "GITHUB_TOKEN",
        "SECRET_KEY",
        "db_password",
    ],
)
def test_secret_name_re_matches_secret_names(name):
    assert SECRET_NAME_RE.search(name)
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["POSTGRES_USER", "POSTGRES_DB", "KEEP_HISTORY", "REDIS_PORT", "KEYCLOAK"]
)
def test_secret_name_re_leaves_other_names(name):
    assert not is_secret_name(name)


def test_is_reference_accepts_only_a_pure_reference():
    assert is_reference("${POSTGRES_PASSWORD}")
    assert not is_reference("${POSTGRES_PASSWORD:-secret}")
    assert not is_reference("$POSTGRES_PASSWORD")
    assert not is_reference("x${POSTGRES_PASSWORD}")
    assert not is_reference("hunter2")
    assert not is_reference(None)


def test_is_reference_with_defaults_allowed():
    assert is_reference("${A:-x}", allow_default=True)
    assert is_reference("${A-x}", allow_default=True)
    assert is_reference("${A}", allow_default=True)
    assert not is_reference("${A:?x}", allow_default=True)


def test_references_lists_names_in_order_once():
    value = "postgresql://${USER}:${PASSWORD}@$HOST/${DB:-x} ${USER} $$NOT"
    assert references(value) == ["USER", "PASSWORD", "HOST", "DB"]


def test_references_walks_lists_and_dicts():
    assert references({"a": ["${A}", {"b": "$B"}], "c": 1}) == ["A", "B"]


def test_resolve_substitutes_braced_and_plain_references():
    environ = {"A": "1", "B": "two"}
    assert resolve("${A}-$B", environ) == "1-two"


def test_resolve_default_forms():
    environ = {"EMPTY": ""}
    assert resolve("${UNSET:-d}", environ) == "d"
    assert resolve("${EMPTY:-d}", environ) == "d"
    assert resolve("${UNSET-d}", environ) == "d"
    assert resolve("${EMPTY-d}", environ) == ""
    assert resolve("${UNSET:-}", environ) == ""


def test_resolve_escaped_dollar():
    assert resolve("cost $$5 and $${HOME}", {}) == "cost $5 and ${HOME}"


def test_resolve_missing_variable_names_variable_and_service():
    with pytest.raises(MissingSecret) as info:
        resolve("${POSTGRES_PASSWORD}", {}, service="postgres")
    assert info.value.variable == "POSTGRES_PASSWORD"
    assert info.value.service == "postgres"
    assert str(info.value) == (
        "variable POSTGRES_PASSWORD is not set (service postgres) and the "
        "reference has no default"
    )


def test_resolve_set_but_empty_is_not_missing():
    assert resolve("${SMTP_PASSWORD}", {"SMTP_PASSWORD": ""}) == ""


def test_resolve_required_forms():
    with pytest.raises(MissingSecret, match="set the key"):
        resolve("${KEY:?set the key}", {"KEY": ""})
    assert resolve("${KEY?needed}", {"KEY": ""}) == ""
    with pytest.raises(MissingSecret, match="needed"):
        resolve("${KEY?needed}", {})


def test_resolve_invalid_reference():
    with pytest.raises(InvalidReference):
        resolve("cost $5", {})
    with pytest.raises(InvalidReference):
        resolve("${A:-${B}}", {"B": "b"})


def test_invalid_references_finds_bad_dollars():
    assert invalid_references(["ok $$", "${A}", "bad $5", "${A"]) == ["bad $5", "${A"]


def test_resolve_uses_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("PORTAL_TEST_VALUE", "from-env")
    assert resolve("${PORTAL_TEST_VALUE}") == "from-env"


def test_resolve_leaves_non_strings():
    assert resolve(5, {}) == 5
    assert resolve(None, {}) is None


def test_resolve_all_walks_structures():
    value = {"cmd": ["--port", "${PORT:-8000}"], "env": {"A": "$A"}, "n": 3}
    assert resolve_all(value, {"A": "a"}) == {
        "cmd": ["--port", "8000"],
        "env": {"A": "a"},
        "n": 3,
    }


def test_load_env_file(tmp_path):
    path = tmp_path / "x.env"
    path.write_text(
        "# comment\n\nA=1\nexport B = two\nC='quoted value'\nD=\"x=y\"\nbad line\n"
    )
    assert load_env_file(path) == {
        "A": "1",
        "B": "two",
        "C": "quoted value",
        "D": "x=y",
    }


def test_environ_for_precedence(tmp_path, settings):
    settings.PORTAL_CONFIG_DIR = tmp_path
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "demo.env").write_text("FROM_FILE=file\nBOTH=file\n")
    environment = Environment(
        name="demo",
        settings={
            "variables": {"FROM_SETTINGS": "settings", "BOTH": "settings", "N": 5},
            "process_variables": ["BOTH", "FROM_PROCESS", "UNSET"],
        },
    )
    process = {"BOTH": "process", "FROM_PROCESS": "p", "NOT_NAMED": "x"}
    environ = environ_for(environment, process=process)
    assert environ == {
        "FROM_SETTINGS": "settings",
        "N": "5",
        "FROM_PROCESS": "p",
        # The environment's file wins over the process, which wins over
        # the settings.
        "FROM_FILE": "file",
        "BOTH": "file",
    }


def test_environ_for_takes_nothing_else_from_the_process(tmp_path, settings):
    """Only named process variables pass, and never the portal's own."""
    settings.PORTAL_CONFIG_DIR = tmp_path
    environment = Environment(
        name="staging", settings={"process_variables": ["SECRET_KEY", "HF_TOKEN"]}
    )
    process = {"SECRET_KEY": "portal-key", "DATABASE_URL": "x", "HF_TOKEN": "hf"}
    assert environ_for(environment, process=process) == {"HF_TOKEN": "hf"}
    assert environ_for(Environment(name="staging"), process=process) == {}


def test_env_file_that_is_not_utf8_names_file_and_line(tmp_path):
    from stacks.secrets import InvalidEnvFile

    path = tmp_path / "staging.env"
    path.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(InvalidEnvFile) as excinfo:
        load_env_file(path)
    assert str(excinfo.value) == (
        f"{path}:2: not valid UTF-8 (byte 0xe9 at byte offset 9); save the file as "
        "UTF-8"
    )

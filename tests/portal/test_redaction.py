"""Redaction hides values and keeps references (portal.redaction)."""

import pytest

from portal.redaction import REDACTED, redact, redact_value


@pytest.mark.parametrize(
    "value, shown",
    [
        ("${POSTGRES_PASSWORD}", "${POSTGRES_PASSWORD}"),
        ("$POSTGRES_PASSWORD", "$POSTGRES_PASSWORD"),
        ("${A}${B}", "${A}${B}"),
        ("${PASSWORD:-changeme}", "${PASSWORD:-********}"),
        ("${PASSWORD-changeme}", "${PASSWORD-********}"),
        ("${PASSWORD:-}", "${PASSWORD:-}"),
        ("${TOKEN:?set it in the env file}", "${TOKEN:?set it in the env file}"),
        ("postgres://u:${PW}@db/x", "********${PW}********"),
        ("hunter2", REDACTED),
        ("", REDACTED),
        ("a$$b", REDACTED),
        ("cost $5 ${A}", "********${A}"),
        (12345, REDACTED),
    ],
)
def test_secret_values_are_hidden_and_references_kept(value, shown):
    assert redact_value(value) == shown
    assert redact({"DB_PASSWORD": value}) == {"DB_PASSWORD": shown}


def test_redact_keeps_other_names_and_walks_nested_and_list_forms():
    config = {
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": "hunter2",
        "nested": {"JWT_SECRET_KEY": "${JWT_SECRET_KEY}", "N": 1},
        "environment": ["A=1", "DB_PASSWORD=x", "API_TOKEN=${API_TOKEN}"],
    }
    assert redact(config) == {
        "POSTGRES_USER": "app",
        "POSTGRES_PASSWORD": REDACTED,
        "nested": {"JWT_SECRET_KEY": "${JWT_SECRET_KEY}", "N": 1},
        "environment": ["A=1", f"DB_PASSWORD={REDACTED}", "API_TOKEN=${API_TOKEN}"],
    }
    assert config["POSTGRES_PASSWORD"] == "hunter2"

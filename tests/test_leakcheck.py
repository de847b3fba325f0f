"""The session-wide leak check finds planted values, and a run fails on them.

The detector is shown leaks of values of its own (never the session's, so
these tests do not fail the run they are part of); the last test runs a
whole pytest session with the plugin and deliberate leaks, and expects it
to fail naming each.
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import StreamingHttpResponse
from django.test import RequestFactory

from portal.audit import record
from stacks.credentials import check_environment
from tests.leakcheck import (
    ACTIVE,
    PREFIX,
    LeakCheckMiddleware,
    LeakDetector,
    credential_variables,
    planted,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def detector():
    """A detector of one value of this test's own, shown every response."""
    detector = LeakDetector({"TEST_TOKEN": f"leak-{secrets.token_hex(12)}"})
    ACTIVE.append(detector)
    yield detector
    ACTIVE.remove(detector)


def test_every_credential_of_the_configuration_is_planted():
    values = planted()
    names = credential_variables()
    assert set(values) == set(names)
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "BACKUP_REPOSITORY_PASSWORD"} <= (
        set(names)
    )
    assert all(os.environ[name] == value for name, value in values.items())
    assert len(set(values.values())) == len(values)
    assert all(v.startswith(PREFIX) and len(v) >= 32 for v in values.values())


@pytest.mark.django_db
def test_planted_variables_are_the_credentials_the_check_finds(settings):
    """The check and the plant agree on what a credential is."""
    from stacks.config import import_configs
    from stacks.models import Environment

    import_configs()
    report = check_environment(Environment.objects.get(name="demo"))
    found = {v.variable for v in report.variables if v.credential}
    assert found == set(credential_variables())


def test_detector_names_variables_and_hides_values(detector):
    value = detector.values["TEST_TOKEN"]
    assert detector.names_in(f"x{value}y") == ("TEST_TOKEN",)
    assert detector.names_in(value.encode()) == ("TEST_TOKEN",)
    assert detector.names_in("nothing") == ()
    hit = detector.check(f"url /?q={value}", f"body {value}")
    assert str(hit) == "TEST_TOKEN in url /?q=<TEST_TOKEN>"
    assert value not in str(hit)


@pytest.mark.django_db
def test_detector_finds_a_value_stored_in_any_table(detector):
    value = detector.values["TEST_TOKEN"]
    entry = record("test.leak", data={"nested": {"token": value}})
    assert detector.scan_database() == [
        type(detector.hits[0])(
            f"table portal_auditentry (row {entry.pk})", ("TEST_TOKEN",)
        )
    ]


def test_detector_finds_a_value_in_files_but_not_in_env_files(detector, tmp_path):
    value = detector.values["TEST_TOKEN"]
    (tmp_path / "export.yaml").write_text(f"password: {value}\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "worker.log").write_bytes(b"\0binary " + value.encode())
    (tmp_path / "production.env").write_text(f"TOKEN={value}\n")
    (tmp_path / "clean.txt").write_text("nothing\n")
    found = detector.scan_files([tmp_path])
    assert sorted(h.where for h in found) == [
        f"file {tmp_path / 'export.yaml'}",
        f"file {tmp_path / 'nested' / 'worker.log'}",
    ]


def test_middleware_shows_pages_and_streams_to_the_detector(detector):
    value = detector.values["TEST_TOKEN"]
    factory = RequestFactory()
    request = factory.get(f"/x/?next={value}")

    def page(request):
        from django.http import HttpResponse

        return HttpResponse(f"<input value='{request.GET['next']}'>", status=500)

    LeakCheckMiddleware(page)(request)
    assert [str(h) for h in detector.hits] == [
        "TEST_TOKEN in response to GET /x/?next=<TEST_TOKEN> (500)"
    ]

    # A streamed value split across two chunks is still found.
    def stream(request):
        return StreamingHttpResponse(
            iter([b"abc" + value[:5].encode(), value[5:].encode()])
        )

    response = LeakCheckMiddleware(stream)(factory.get("/log.txt"))
    assert b"".join(response.streaming_content).endswith(value.encode())
    assert str(detector.hits[-1]) == "TEST_TOKEN in response to GET /log.txt (200)"


def test_a_server_process_reports_through_files(tmp_path, monkeypatch):
    """In daphne (no pytest), the middleware reads the planted names from the
    environment and writes what it finds, without values, for the run."""
    from django.http import HttpResponse

    from tests import leakcheck

    value = f"leak-{secrets.token_hex(12)}"
    monkeypatch.setattr(leakcheck, "ACTIVE", [])
    monkeypatch.setenv(leakcheck.PLANTED_ENV, "REMOTE_TOKEN")
    monkeypatch.setenv("REMOTE_TOKEN", value)
    monkeypatch.setenv(leakcheck.HITS_ENV, str(tmp_path))
    request = RequestFactory().get(f"/err/?q={value}")
    LeakCheckMiddleware(lambda r: HttpResponse(f"oops {value}", status=500))(request)
    LeakCheckMiddleware(lambda r: HttpResponse("fine"))(RequestFactory().get("/"))
    assert (tmp_path / f"hits-{os.getpid()}.log").read_text() == (
        "response to GET /err/?q=<REMOTE_TOKEN> (500)\tREMOTE_TOKEN\n"
    )


INNER_TESTS = """
import logging
import os

import pytest


def test_clean(tmp_path):
    # Env files are the secret sources: not an output.
    (tmp_path / "ok.env").write_text("PW=" + os.environ["POSTGRES_PASSWORD"])
    logging.getLogger("portal.inner").warning("nothing secret here")


def test_leaks_into_a_log_record():
    logging.getLogger("portal.inner").warning(
        "connecting with %s", os.environ["POSTGRES_PASSWORD"]
    )


def test_leaks_into_captured_output():
    print("token:", os.environ["N8N_API_KEY"])


@pytest.mark.django_db
def test_leaks_into_an_audit_entry():
    from portal.audit import record

    record("inner.leak", data={"password": os.environ["MINIO_ROOT_PASSWORD"]})


@pytest.mark.django_db
def test_leaks_into_a_page(client):
    client.get("/accounts/login/?next=/" + os.environ["JWT_SECRET_KEY"])


def test_leaks_into_an_export(tmp_path):
    (tmp_path / "export.yaml").write_text("key: " + os.environ["WEBUI_SECRET_KEY"])
"""


@pytest.mark.slow
def test_a_run_with_leaks_fails_naming_each(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nDJANGO_SETTINGS_MODULE = tests.settings\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PORTAL_TEST_DB": str(tmp_path / "inner.sqlite3"),
        # Summary lines are cut to the terminal's width.
        "COLUMNS": "400",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.leakcheck",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            "--basetemp",
            str(tmp_path / "inner-tmp"),
            "-rA",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert re.search(r"PASSED \S*test_inner.py::test_clean\n", output), output
    assert not re.search(r"ERROR \S*test_inner.py::test_clean ", output), output
    for test, where in [
        ("a_log_record", "POSTGRES_PASSWORD in log record of logger portal.inner"),
        ("captured_output", "N8N_API_KEY in captured stdout call"),
        ("an_audit_entry", "MINIO_ROOT_PASSWORD in table portal_auditentry (row 1)"),
        (
            "a_page",
            "JWT_SECRET_KEY in response to GET /accounts/login/?next=/"
            "<JWT_SECRET_KEY> (200)",
        ),
    ]:
        assert re.search(rf"ERROR \S*test_inner.py::test_leaks_into_{test} - ", output)
        assert where in output, output
    assert "Planted secret values found at the end of the run" in output
    assert re.search(r"WEBUI_SECRET_KEY in file \S+/export.yaml", output), output
    # Reports name variables, never values (captured output included).
    assert "connecting with <POSTGRES_PASSWORD>" in output
    assert not re.search(rf"{PREFIX}[0-9a-f]{{8}}", output), output

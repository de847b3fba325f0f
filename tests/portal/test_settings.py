"""The real settings module: production checks, local secrets kept out of git."""

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, env):
    """Run ``manage.py`` with only ``env`` (plus PATH) in its environment."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def production_env(tmp_path):
    return {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_PRODUCTION": "true",
        # 60 characters; no "$", which django-environ would expand.
        "SECRET_KEY": secrets.token_urlsafe(45),
        "ALLOWED_HOSTS": "portal.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
    }


def test_settings_production_passes_check_deploy(production_env):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_settings_production_without_secret_key_refuses_to_start(production_env):
    del production_env["SECRET_KEY"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_settings_dotenv_is_ignored_by_git():
    """settings.py reads .env from the repository root; it must stay local."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--quiet", ".env"], cwd=ROOT
    )
    assert result.returncode == 0, ".env is not ignored by .gitignore"

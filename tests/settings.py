"""Settings for the test suite: the real ones, pointed at the test Redis."""

import os

os.environ.setdefault(
    "REDIS_URL", os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
)
os.environ.setdefault("CHANNELS_PREFIX", "portal-test")

# One SQLite file per test session, so parallel runs never share it. It goes
# into the environment so worker processes spawned by tests inherit it.
os.environ.setdefault(
    "PORTAL_TEST_DB",
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ".state",
        f"test-{os.getpid()}.sqlite3",
    ),
)

from portal.settings import *  # noqa: E402,F401,F403

# Each test gets its own SQLite file through pytest-django; workers spawned by
# tests use the same file (see tests/conftest.py).
DATABASES["default"] = {  # noqa: F405
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ["PORTAL_TEST_DB"],
    "OPTIONS": SQLITE_OPTIONS,  # noqa: F405
    "TEST": {"NAME": os.environ["PORTAL_TEST_DB"]},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Every response the test client or a test server sends is searched for the
# planted secret values (tests/leakcheck.py).
MIDDLEWARE = ["tests.leakcheck.LeakCheckMiddleware", *MIDDLEWARE]  # noqa: F405
# Labels for every Docker object, for processes a test starts (a worker that
# runs a stack start): teardown removes what carries the run's label.
if os.environ.get("PORTAL_TEST_LABELS"):
    import json

    PORTAL_EXTRA_LABELS = json.loads(os.environ["PORTAL_TEST_LABELS"])

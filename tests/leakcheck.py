"""The session-wide check that no planted secret value leaves through an output.

A pytest plugin (``tests/conftest.py`` loads it; ``-p tests.leakcheck``
loads it in any other run).

**Planting.** When the run starts, every credential variable the
configuration refers to (``configs/*.yaml``: secret-named references, and
references from secret-named fields such as ``MINIO_ACCESS_KEY:
${MINIO_ROOT_USER}``) gets a distinctive random value in this process's
environment, so every worker, daphne server and command the tests start
inherits it. An environment that names them in ``settings.process_variables``
resolves its secrets from them the production way (``environ_for``,
``resolve``, the container): the credential tests do
(``tests/stacks/test_credentials.py``).

**Searching**, without ever printing a value (a hit names the variable):

- after each test that used the database, before its fixtures are torn
  down (so the rows of a rolled-back test are still there): every text and
  JSON column of the project's tables and the admin's log, i.e. operation
  log lines, operations' plans, results and errors, audit entries, backup
  records, and the configuration rows (where secrets are never stored);
- during each test: the log records of this process (a handler on the
  root logger), the test's captured output and log, and every response the
  test client or the test daphne server sends, error pages included
  (:class:`LeakCheckMiddleware` in ``tests/settings.py``; another process
  reports through files in ``$PORTAL_TEST_LEAKCHECK_DIR``);
- when the run ends: every file under the run's temporary folder (exports,
  rendered compose files, worker and daphne logs; ``*.env`` files are the
  secret sources and are skipped), the ``.state`` logs, ``rendered/`` and
  the test database file itself (deleted rows linger in its free pages).

A hit in a test makes that test error at teardown; a hit found at the end
fails the run. The terminal summary says what was searched either way.
"""

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "HITS_ENV",
    "PLANTED_ENV",
    "PREFIX",
    "Hit",
    "LeakCheckMiddleware",
    "LeakDetector",
    "credential_variables",
    "planted",
]

ROOT = Path(__file__).resolve().parent.parent
#: Names of the planted variables, comma-separated, for other processes.
PLANTED_ENV = "PORTAL_TEST_PLANTED"
#: Folder where other processes write what they found.
HITS_ENV = "PORTAL_TEST_LEAKCHECK_DIR"
#: Every planted value starts with this, so a stray one is easy to grep.
PREFIX = "pl4nted"
# Apps whose tables are searched after each test (plus the admin's log).
DATABASE_APPS = ("portal", "stacks", "backups", "retention", "admin")
# Files larger than this are not outputs worth reading at the end.
MAX_FILE_BYTES = 64 * 1024 * 1024
_REFERENCE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_]\w*)")
_FIELD_RE = re.compile(r"^\s*(?:-\s+)?[\"']?([A-Za-z_][\w.-]*)[\"']?\s*[:=]\s*(.*)$")


def credential_variables(config_dir=None):
    """Return the credential variables ``configs/*.yaml`` refer to, sorted."""
    from portal.redaction import is_secret_name

    names = set()
    for path in sorted(Path(config_dir or ROOT / "configs").glob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _FIELD_RE.match(line)
            if not match:
                continue
            key, value = match.groups()
            for ref in _REFERENCE_RE.finditer(value):
                name = ref.group(1) or ref.group(2)
                if is_secret_name(name) or is_secret_name(key):
                    names.add(name)
    return sorted(names)


def planted():
    """Return ``{name: value}`` of the values planted in this process."""
    names = [n for n in os.environ.get(PLANTED_ENV, "").split(",") if n]
    return {name: os.environ[name] for name in names if os.environ.get(name)}


@dataclass(frozen=True)
class Hit:
    """A planted value found somewhere: where, and whose (never the value)."""

    where: str
    variables: tuple
    test: str = ""

    def __str__(self):
        test = f"{self.test}: " if self.test else ""
        return f"{test}{', '.join(self.variables)} in {self.where}"


class LeakDetector:
    """Search outputs for a set of planted values."""

    def __init__(self, values, sink=None):
        self.values = dict(values)
        self._encoded = [(n, v.encode()) for n, v in self.values.items()]
        self.hits = []
        self.sink = sink
        self.searched = {}

    def names_in(self, data):
        """Return the names of the planted values ``data`` (text or bytes) holds."""
        if isinstance(data, str):
            return tuple(n for n, v in self.values.items() if v in data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            return tuple(n for n, v in self._encoded if v in data)
        return ()

    def hide(self, text):
        """Return ``text`` with planted values replaced by ``<NAME>``."""
        for name, value in self.values.items():
            text = text.replace(value, f"<{name}>")
        return text

    def check(self, where, data, *, test="", kind="outputs"):
        """Record a :class:`Hit` when ``data`` holds a planted value; return it."""
        self.searched[kind] = self.searched.get(kind, 0) + 1
        names = self.names_in(data)
        if not names:
            return None
        return self.record(Hit(self.hide(where), names, test))

    def record(self, hit):
        """Keep ``hit`` and pass it to the sink; return it."""
        self.hits.append(hit)
        if self.sink is not None:
            self.sink(hit)
        return hit

    # -- the database

    def scan_database(self, *, test="", using="default"):
        """Search every text and JSON column of the project's tables."""
        from django.apps import apps
        from django.db import DatabaseError, connections, models
        from django.db.models import Q
        from django.db.models.functions import Cast

        connection = connections[using]
        if connection.in_atomic_block and connection.needs_rollback:
            return []
        found = []
        for model in apps.get_models():
            if model._meta.app_label not in DATABASE_APPS:
                continue
            fields = [
                f
                for f in model._meta.concrete_fields
                if isinstance(f, (models.CharField, models.TextField, models.JSONField))
            ]
            if not fields:
                continue
            queryset = model._base_manager.using(using)
            columns, query = [], Q()
            for f in fields:
                column = f.attname
                if isinstance(f, models.JSONField):
                    column = f"_leakcheck_{f.attname}"
                    queryset = queryset.annotate(
                        **{column: Cast(f.attname, models.TextField())}
                    )
                columns.append(column)
                for value in self.values.values():
                    query |= Q(**{f"{column}__contains": value})
            try:
                rows = list(queryset.filter(query).values_list("pk", *columns)[:5])
            except DatabaseError:
                continue
            self.searched["tables"] = self.searched.get("tables", 0) + 1
            for pk, *texts in rows:
                names = self.names_in(" ".join(str(t) for t in texts))
                where = f"table {model._meta.db_table} (row {pk})"
                found.append(self.record(Hit(where, names, test)))
        return found

    # -- files

    def scan_files(self, roots, *, test=""):
        """Search every file under ``roots`` (env files, the secret sources, aside)."""
        found = []
        for root in roots:
            root = Path(root)
            paths = (
                [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
            )
            for path in paths:
                if (
                    path.name.endswith(".env")
                    or not path.is_file()
                    or path.is_symlink()
                ):
                    continue
                try:
                    if path.stat().st_size > MAX_FILE_BYTES:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                hit = self.check(f"file {path}", data, test=test, kind="files")
                if hit is not None:
                    found.append(hit)
        return found


# -- pages ---------------------------------------------------------------------

#: The detectors responses and log records are shown to, in this process.
ACTIVE = []


def _active():
    """Return the active detectors; in a server process, one from the environment."""
    if not ACTIVE and os.environ.get(PLANTED_ENV) and os.environ.get(HITS_ENV):
        folder = Path(os.environ[HITS_ENV])

        def sink(hit):
            with open(folder / f"hits-{os.getpid()}.log", "a", encoding="utf-8") as out:
                out.write(f"{hit.where}\t{','.join(hit.variables)}\n")

        ACTIVE.append(LeakDetector(planted(), sink=sink))
    return ACTIVE


def _response_checked(request, response):
    detectors = _active()
    if not detectors:
        return response
    path, status = request.get_full_path(), response.status_code
    where = f"response to {request.method} {path} ({status})"
    if not response.streaming:
        for detector in detectors:
            detector.check(where, response.content, kind="responses")
        return response
    keep = max((len(v) for d in detectors for v in d.values.values()), default=1)
    if response.is_async:
        original = response.streaming_content

        async def checked():
            tail = b""
            async for chunk in original:
                data = tail + bytes(chunk)
                for detector in detectors:
                    detector.check(where, data, kind="responses")
                tail = data[-keep:]
                yield chunk

        response.streaming_content = checked()
    else:
        original = response.streaming_content

        def checked():
            tail = b""
            for chunk in original:
                data = tail + bytes(chunk)
                for detector in detectors:
                    detector.check(where, data, kind="responses")
                tail = data[-keep:]
                yield chunk

        response.streaming_content = checked()
    return response


class LeakCheckMiddleware:
    """Show every response (error pages too) to the active detectors.

    First in ``MIDDLEWARE`` of the test settings, so it sees what the
    browser or the test client receives, after every other middleware.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return _response_checked(request, self.get_response(request))

    async def _acall(self, request):
        return _response_checked(request, await self.get_response(request))


# -- log records ---------------------------------------------------------------


class _LogHandler(logging.Handler):
    """Show each log record of this process to the session's detector."""

    def __init__(self, plugin):
        super().__init__(level=logging.NOTSET)
        self.plugin = plugin

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.exc_info:
                text += logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                text += record.stack_info
        except Exception:  # noqa: BLE001 - a bad record is not ours to judge
            return
        self.plugin.observe(f"log record of logger {record.name}", text, "log records")


# -- the plugin ----------------------------------------------------------------

_HITS = pytest.StashKey[list]()
_DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


class LeakCheck:
    """The plugin: plants values, watches the outputs, reports hits."""

    def __init__(self, config):
        self.config = config
        self.values = {}
        self.detector = None
        self.current = None
        self.session_hits = []
        self.hit_files = {}
        self.folder = None

    # -- set up

    def plant(self):
        import tempfile

        self.values = {
            name: f"{PREFIX}{secrets.token_hex(16)}" for name in credential_variables()
        }
        os.environ.update(self.values)
        os.environ[PLANTED_ENV] = ",".join(self.values)
        self.folder = Path(tempfile.mkdtemp(prefix="portal-leakcheck-"))
        os.environ[HITS_ENV] = str(self.folder)
        self.detector = LeakDetector(self.values, sink=self._remember)
        ACTIVE.append(self.detector)
        self.handler = _LogHandler(self)
        logging.getLogger().addHandler(self.handler)

    def unplant(self):
        logging.getLogger().removeHandler(self.handler)
        if self.detector in ACTIVE:
            ACTIVE.remove(self.detector)

    # -- watching

    def observe(self, where, data, kind):
        test = self.current.nodeid if self.current is not None else ""
        self.detector.check(where, data, test=test, kind=kind)

    def _remember(self, hit):
        """Attach ``hit`` to the running test, or to the session between tests."""
        if self.current is not None:
            self.current.stash.setdefault(_HITS, []).append(hit)
        else:
            self.session_hits.append(hit)

    def _server_hits(self):
        """Record the hits other processes reported since the last call."""
        for path in sorted(self.folder.glob("hits-*.log")):
            start = self.hit_files.get(path, 0)
            with open(path, encoding="utf-8") as hits:
                hits.seek(start)
                lines = hits.readlines()
                self.hit_files[path] = hits.tell()
            for line in lines:
                where, _, names = line.rstrip("\n").partition("\t")
                test = self.current.nodeid if self.current is not None else ""
                self.detector.record(
                    Hit(f"{where} (another process)", tuple(names.split(",")), test)
                )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.current = item

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # Before the fixtures go: a rolled-back test's rows are still there.
        if self._uses_database(item):
            self._scan_database(item)
        if nextitem is None:
            # After the last test the session's database file is removed;
            # rows deleted during the run linger in its free pages.
            database = os.environ.get("PORTAL_TEST_DB")
            if database:
                self.current = None
                self.detector.scan_files(
                    [Path(database + end) for end in ("", "-wal", "-journal")]
                )
                self.current = item
        try:
            return (yield)
        finally:
            self._server_hits()

    def _scan_database(self, item):
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.detector.scan_database(test=item.nodeid)
            return
        # An event loop runs in this thread (Playwright's, for instance) and
        # Django refuses synchronous queries here: search from another thread,
        # on its own connection (the browser tests' rows are committed).
        import threading

        def scan():
            from django.db import connections

            try:
                self.detector.scan_database(test=item.nodeid)
            finally:
                connections.close_all()

        thread = threading.Thread(target=scan, name="leakcheck")
        thread.start()
        thread.join()

    @staticmethod
    def _uses_database(item):
        if item.get_closest_marker("django_db") is not None:
            return True
        return bool(_DB_FIXTURES & set(getattr(item, "fixturenames", ())))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when == "teardown":
            # The teardown report holds the output captured in every phase.
            for name, text in report.sections:
                self.observe(name.lower(), text, "captured outputs")
            hits = item.stash.get(_HITS, [])
            if hits and report.outcome != "failed":
                report.outcome = "failed"
                report.longrepr = (
                    "Planted secret values leaked (the variables and where):\n"
                    + "\n".join(
                        f"  {', '.join(h.variables)} in {h.where}" for h in hits
                    )
                )
            self.current = None
        # A report shows captured output: with the variables' names instead.
        report.sections = [
            (name, self.detector.hide(text)) for name, text in report.sections
        ]
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.current = None
        roots = sorted((ROOT / ".state").glob("*.log"))
        roots += sorted((ROOT / ".state" / "cron").glob("*.log"))
        roots.append(ROOT / "rendered")
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            try:
                roots.append(factory.getbasetemp())
            except OSError:
                pass
        self.detector.scan_files(dict.fromkeys(roots))
        self._server_hits()
        if self.session_hits and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        searched = ", ".join(
            f"{n} {k}" for k, n in sorted(self.detector.searched.items())
        )
        terminalreporter.write_sep("-", "leak check")
        terminalreporter.write_line(
            f"{len(self.values)} planted credential values; searched "
            f"{searched or 'nothing'}."
        )
        if self.session_hits:
            terminalreporter.write_line(
                "Planted secret values found at the end of the run (the variables "
                "and where):",
                red=True,
            )
            for hit in self.session_hits:
                terminalreporter.write_line(f"  {hit}", red=True)
        else:
            leaking = sum(1 for h in self.detector.hits if h.test)
            terminalreporter.write_line(
                f"{leaking} hit(s) in tests (reported with them); none at the end."
            )

    def pytest_unconfigure(self, config):
        import shutil

        self.unplant()
        shutil.rmtree(self.folder, ignore_errors=True)


def pytest_configure(config):
    """Plant the values and watch the outputs (once per run)."""
    if config.pluginmanager.has_plugin("leakcheck-session"):
        return
    plugin = LeakCheck(config)
    plugin.plant()
    config.pluginmanager.register(plugin, "leakcheck-session")

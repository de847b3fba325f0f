"""The scanner for hard-coded secrets in files and in the stored configuration.

:func:`scan` looks at files and folders (by default the configuration
folder, ``configs/``, and the rendered compose files, ``rendered/``) and at
the configuration in the database (the environments' overrides and settings
as the admin may have edited them), with the rules of
``stacks.schema.literals``:

- YAML files (``stacks.yaml``, the companions, rendered compose files) are
  walked as documents: secret fields, ``NAME=value`` items, secret options
  in commands, passwords in URLs, private keys, token formats; each finding
  names the file, the line and the key path.
- env files (``*.env.example``; a real ``*.env`` only when named on the
  command line: that is where secrets belong) and Dockerfiles (``ENV``,
  ``ARG``) are read as ``NAME=value`` lines.
- anything else that is text is searched for private keys and token
  formats, line by line.

A line whose comment holds ``scan-secrets: allow`` is allowed, and so is
everything below a YAML key whose line holds it (the demo's public values).
Allowed findings are counted, not reported. The database is compared with
``stacks.yaml``: only what the file does not hold is reported there.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from ..config import export_data
from ..schema.literals import ALLOW_MARKER, in_field, in_text, walk
from ..schema.loader import display_path, line_of, load_yaml

__all__ = ["DATABASE", "Finding", "ScanReport", "default_targets", "scan"]

#: How findings in the stored configuration name their "file".
DATABASE = "database"
# Larger files are not configuration.
MAX_FILE_BYTES = 5 * 1024 * 1024
_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv"}
_YAML_SUFFIXES = (".yaml", ".yml")
_ENV_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_DOCKERFILE_ENV_RE = re.compile(r"^\s*(ENV|ARG)\s+(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One hard-coded secret: where it is and what it looks like, not its value."""

    file: str
    line: int
    path: str
    kind: str
    what: str
    allowed: bool = False

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.path}: {self.what}"
            if self.path
            else f"{where}: {self.what}"
        )


@dataclass
class ScanReport:
    """What :func:`scan` looked at and found."""

    files: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    database: bool = False

    @property
    def reported(self):
        """Return the findings that are not allowed."""
        return [f for f in self.findings if not f.allowed]

    @property
    def allowed(self):
        """Return the findings a ``scan-secrets: allow`` comment allows."""
        return [f for f in self.findings if f.allowed]

    def summary(self):
        """Return one line: what was scanned and found."""
        where = f"{len(self.files)} file(s)"
        if self.database:
            where += " and the configuration in the database"
        text = (
            f"Scanned {where}: {len(self.reported)} hard-coded secret(s), "
            f"{len(self.allowed)} allowed"
        )
        if self.skipped:
            text += f", {len(self.skipped)} file(s) skipped"
        return text + "."


def default_targets():
    """Return the configuration folder and, when it exists, ``rendered/``."""
    targets = [Path(settings.PORTAL_CONFIG_DIR)]
    rendered = Path(settings.BASE_DIR) / "rendered"
    if rendered.is_dir():
        targets.append(rendered)
    return targets


def scan(paths=None, *, database=True):
    """Scan ``paths`` (default :func:`default_targets`) and the database.

    A folder is walked; a real environment file (``*.env``) in it is skipped
    (named files are always read). Returns a :class:`ScanReport`.
    """
    report = ScanReport(database=database)
    for target in [Path(p) for p in (paths or default_targets())]:
        if target.is_dir():
            for path in sorted(_files_below(target)):
                if path.name.endswith(".env") or path.name == ".env":
                    report.skipped.append(
                        f"{display_path(path)} (an environment file: where "
                        "secrets belong)"
                    )
                    continue
                _scan_file(path, report)
        elif target.is_file():
            _scan_file(target, report)
        else:
            report.problems.append(f"{target}: no such file or folder")
    if database:
        report.findings.extend(_scan_database())
    return report


def _files_below(folder):
    for path in folder.rglob("*"):
        if any(part in _SKIP_DIRS for part in path.relative_to(folder).parts):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def _scan_file(path, report):
    name = display_path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            report.skipped.append(f"{name} (larger than {MAX_FILE_BYTES} bytes)")
            return
        data = path.read_bytes()
    except OSError as exc:
        report.problems.append(f"{name}: cannot read file: {exc.strerror or exc}")
        return
    if b"\0" in data[:8192]:
        report.skipped.append(f"{name} (binary)")
        return
    report.files.append(name)
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if path.suffix in _YAML_SUFFIXES:
        found = _scan_yaml(path, name, lines, report)
    elif path.name.endswith((".env", ".env.example")) or path.name == ".env":
        found = _scan_lines(name, lines, _env_line)
    elif path.name == "Dockerfile" or path.name.startswith("Dockerfile."):
        found = _scan_lines(name, lines, _dockerfile_line)
    else:
        found = _scan_lines(name, lines, _text_line)
    report.findings.extend(found)


# -- YAML


def _scan_yaml(path, name, lines, report):
    document, issues = load_yaml(path, name=name)
    if document is None:
        if issues:
            report.problems.append(
                f"{issues[0]} (searched line by line for keys and tokens instead)"
            )
        return _scan_lines(name, lines, _text_line)
    allowed = _allowed_lines(lines)
    found = []
    for container, key, key_path, literal in walk(document):
        line = line_of(container, key)
        found.append(
            Finding(name, line, key_path, literal.kind, literal.what, line in allowed)
        )
    return found


def _indent(line):
    return len(line) - len(line.lstrip(" "))


def _allowed_lines(lines):
    """Return the line numbers a ``scan-secrets: allow`` comment covers.

    Its own line, and when that line opens a block (a key with nothing after
    the colon), every line of the block: the lines after it that are blank,
    comments, or indented deeper.
    """
    allowed = set()
    for index, line in enumerate(lines):
        if ALLOW_MARKER not in line:
            continue
        allowed.add(index + 1)
        code = line.split("#", 1)[0].rstrip()
        if not code.endswith(":"):
            continue
        depth = _indent(line)
        for number in range(index + 1, len(lines)):
            following = lines[number]
            stripped = following.strip()
            if (
                stripped
                and not stripped.startswith("#")
                and _indent(following) <= depth
            ):
                break
            allowed.add(number + 1)
    return allowed


# -- lines


def _scan_lines(name, lines, judge):
    found = []
    for number, line in enumerate(lines, start=1):
        allowed = ALLOW_MARKER in line
        for path, literal in judge(line):
            found.append(
                Finding(name, number, path, literal.kind, literal.what, allowed)
            )
    return found


def _unquote(value):
    value = value.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def _env_line(line):
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return []
    match = _ENV_LINE_RE.match(line)
    if match is None:
        return _text_line(line)
    name, value = match.group(1), _unquote(match.group(2))
    return [(name, literal) for literal in in_field(name, value)]


def _dockerfile_line(line):
    match = _DOCKERFILE_ENV_RE.match(line)
    if match is None:
        return _text_line(line)
    rest = match.group(2).strip()
    found = []
    if "=" in rest.split(" ", 1)[0]:
        pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S*)", rest)
    else:
        name, _, value = rest.partition(" ")
        pairs = [(name, value)]
    for name, value in pairs:
        found.extend((name, literal) for literal in in_field(name, _unquote(value)))
    return found


def _text_line(line):
    return [("", literal) for literal in in_text(line)]


# -- the database


def _scan_database():
    """Return the findings of the stored configuration that the file lacks."""
    stacks_file = Path(settings.PORTAL_CONFIG_DIR) / "stacks.yaml"
    in_file = set()
    if stacks_file.is_file():
        lines = stacks_file.read_text(encoding="utf-8", errors="replace").splitlines()
        scratch = ScanReport()
        for finding in _scan_yaml(stacks_file, str(stacks_file), lines, scratch):
            in_file.add((finding.path, finding.kind))
    found = []
    for _, _, key_path, literal in walk(export_data()):
        if (key_path, literal.kind) in in_file:
            continue
        found.append(Finding(DATABASE, 0, key_path, literal.kind, literal.what))
    return found

"""YAML loading that remembers where every key and list item came from.

Mappings load as :class:`LineDict` (``.lines[key]`` is the 1-based line of
the key, ``.line`` the line where the mapping starts) and sequences as
:class:`LineList` (``.lines[i]`` is the line of item ``i``), so validation
errors can name ``file:line``.
"""

from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings

__all__ = [
    "ConfigError",
    "Issue",
    "LineDict",
    "LineList",
    "display_path",
    "line_of",
    "load_yaml",
]


class LineDict(dict):
    """A dict loaded from YAML, with the line of each key."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = {}
        self.line = 0


class LineList(list):
    """A list loaded from YAML, with the line of each item."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = []
        self.line = 0


@dataclass(frozen=True)
class Issue:
    """One problem in a configuration file, at a line and a key path."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.path}: {self.message}"
            if self.path
            else (f"{where}: {self.message}")
        )


class ConfigError(Exception):
    """The configuration has errors; nothing was imported.

    ``issues`` lists every :class:`Issue` found, in file order.
    """

    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loader (libyaml when available) building LineDict/LineList."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates = []


def _construct_mapping(loader, node):
    data = LineDict()
    yield data
    data.line = node.start_mark.line + 1
    merge_tag = "tag:yaml.org,2002:merge"
    own = sum(1 for key_node, _ in node.value if key_node.tag != merge_tag)
    loader.flatten_mapping(node)
    # flatten_mapping puts the pairs of "<<" merges first; a key written
    # after a merge overrides it on purpose and is no duplicate.
    merged = len(node.value) - own
    seen = {}
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        line = key_node.start_mark.line + 1
        if index >= merged:
            if key in seen:
                loader.duplicates.append((line, key, seen[key]))
            seen[key] = line
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = line


def _construct_sequence(loader, node):
    data = LineList()
    yield data
    data.line = node.start_mark.line + 1
    data.lines = [child.start_mark.line + 1 for child in node.value]
    data.extend(loader.construct_object(child, deep=False) for child in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def display_path(path):
    """Return ``path`` relative to the project directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


def load_yaml(path, *, name=None):
    """Load ``path`` and return ``(document, issues)``.

    ``document`` is None when the file cannot be read or parsed; ``issues``
    holds the syntax error or the duplicate keys found. ``name`` is how the
    file is named in issues (default: :func:`display_path`).
    """
    name = name or display_path(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, [Issue(name, 0, "", f"cannot read file: {exc.strerror or exc}")]
    loader = _LineLoader(text)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        return None, [Issue(name, line, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Issue(name, 0, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    issues = [
        Issue(name, line, str(key), f"duplicate key (first at line {first})")
        for line, key, first in loader.duplicates
    ]
    return document, issues


def line_of(container, key=None):
    """Return the line of ``key`` in ``container`` (or of the container)."""
    if key is not None:
        lines = getattr(container, "lines", None)
        if isinstance(lines, dict) and key in lines:
            return lines[key]
        if isinstance(lines, list) and isinstance(key, int) and key < len(lines):
            return lines[key]
    return getattr(container, "line", 0)

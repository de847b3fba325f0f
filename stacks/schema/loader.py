"""YAML loading that remembers where every key and list item came from.

Mappings load as :class:`LineDict` (``.lines[key]`` is the 1-based line of
the key, ``.line`` the line where the mapping starts) and sequences as
:class:`LineList` (``.lines[i]`` is the line of item ``i``), so validation
errors can name ``file:line``.

A file is refused with an :class:`Issue`, never an exception, when it is not
UTF-8, is not YAML, refers to an anchor from inside itself, or would expand
through its aliases to more than :func:`expansion_limit` bytes. An alias is
the same node as its anchor until Python objects are built from it, so the
expanded size is measured on the composed node graph, before anything big
exists; later steps (copies, JSON, the database) would expand every alias.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANDED_BYTES",
    "ConfigError",
    "Issue",
    "LineDict",
    "LineList",
    "display_path",
    "expansion_limit",
    "line_of",
    "load_yaml",
    "readable",
]

# What a document may expand to through its aliases: 16 MiB, or four times
# the file when that is more. The real stacks.yaml expands to about its own
# size; an alias bomb of a 1 MB string used 5,000 times would need 5 GB.
MAX_EXPANDED_BYTES = 16 * 1024 * 1024
EXPANSION_FACTOR = 4
# Mappings and lists nested deeper than this are refused: the real files
# nest about ten deep, and the recursive steps after loading (copies, JSON)
# must stay far from Python's recursion limit.
MAX_DEPTH = 100


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


# How issues are shown to a person: a name or value (a run of characters
# without spaces) longer than LONG_WORD keeps its first WORD_HEAD and last
# WORD_TAIL characters around an ellipsis, and a message is cut after
# MAX_MESSAGE characters. The Issue itself keeps every character.
LONG_WORD = 64
WORD_HEAD = 40
WORD_TAIL = 12
MAX_MESSAGE = 400
_LONG_WORD_RE = re.compile(rf"\S{{{LONG_WORD + 1},}}")


def _cut(word):
    return f"{word[:WORD_HEAD]}…{word[-WORD_TAIL:]}"


def readable(text, *, dotted=False):
    """Return ``text`` with its very long words cut, for a person to read.

    With ``dotted``, ``text`` is a key path and each of its dotted parts is
    cut on its own, so ``services.<long name>.image`` still ends in
    ``.image``.
    """
    if dotted:
        return ".".join(
            _cut(part) if len(part) > LONG_WORD else part for part in text.split(".")
        )
    text = _LONG_WORD_RE.sub(lambda match: _cut(match.group()), text)
    if len(text) > MAX_MESSAGE:
        text = f"{text[: MAX_MESSAGE - 1]}…"
    return text


@dataclass(frozen=True)
class Issue:
    """One problem in a configuration file, at a line and a key path.

    ``str()`` shows it to a person with very long names and values cut (see
    :func:`readable`); the fields keep them whole.
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        message = readable(self.message)
        if self.path:
            return f"{where}: {readable(self.path, dotted=True)}: {message}"
        return f"{where}: {message}"


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


def expansion_limit(file_size):
    """Return how many bytes a file of ``file_size`` bytes may expand to."""
    return max(MAX_EXPANDED_BYTES, EXPANSION_FACTOR * file_size)


def load_yaml(path, *, name=None):
    """Load ``path`` and return ``(document, issues)``.

    ``document`` is None when the file cannot be read, decoded, parsed or
    expanded within :func:`expansion_limit`; ``issues`` then holds the one
    reason, else the duplicate keys found. ``name`` is how the file is named
    in issues (default: :func:`display_path`).
    """
    name = name or display_path(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, [Issue(name, 0, "", f"cannot read file: {exc.strerror or exc}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [_not_utf8(name, data, exc)]
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problem = _expansion_problem(node, expansion_limit(len(data)), text)
        if problem:
            line, message = problem
            return None, [Issue(name, line, "", message)]
        document = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        return None, [Issue(name, line, "", f"invalid YAML: {problem}")]
    except yaml.reader.ReaderError as exc:
        return None, [_unreadable_character(name, text, exc)]
    except yaml.YAMLError as exc:
        return None, [Issue(name, 0, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    issues = [
        Issue(name, line, str(key), f"duplicate key (first at line {first})")
        for line, key, first in loader.duplicates
    ]
    return document, issues


def _not_utf8(name, data, exc):
    """Return the issue of a file that is not UTF-8, at its first bad byte."""
    offset = exc.start
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return Issue(
        name,
        line,
        "",
        f"not valid UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} "
        f"(line {line}, byte {column} of the line) cannot be decoded; save the "
        "file as UTF-8",
    )


def _unreadable_character(name, text, exc):
    """Return the issue of a character YAML does not allow (a control code)."""
    message = f"invalid YAML: {exc.reason}"
    if not isinstance(exc.character, int):
        return Issue(name, 0, "", message)
    # The reader stops at the first such character, so the first occurrence
    # of its code is the one it means, whichever backend counted the offset.
    index = text.find(chr(exc.character))
    if index < 0:
        return Issue(name, 0, "", f"{message} (#x{exc.character:04x})")
    offset = len(text[:index].encode("utf-8"))
    return Issue(
        name,
        text.count("\n", 0, index) + 1,
        "",
        f"{message}: #x{exc.character:04x} at byte offset {offset}",
    )


_ANCHOR_RE = re.compile(r"(?:![^\s]*\s+)?&([^\s,\[\]{}]+)")


def _children(node):
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return ()


def _anchor_name(node, text):
    """Return the anchor written at ``node``'s start, or ``"?"``."""
    lines = text.splitlines()
    mark = node.start_mark
    if mark.line < len(lines):
        match = _ANCHOR_RE.match(lines[mark.line], mark.column)
        if match:
            return match.group(1)
    return "?"


def _expansion_problem(root, limit, text):
    """Return ``(line, message)`` of a recursive, too deep or too big document.

    Return None when ``root`` refers to no ancestor, nests at most
    :data:`MAX_DEPTH` levels and expands to at most ``limit`` bytes.

    The expanded size counts each scalar's UTF-8 bytes plus one, and two
    for each mapping and sequence: about the document's size as JSON. Size
    and depth are computed once per node, however often the node is aliased,
    so this walk is linear in the file, and iterative, so it cannot overflow.
    """
    size, height, done, order, uses = {}, {}, set(), [], {}
    active = set()
    todo = [(root, False)]
    while todo:
        node, leaving = todo.pop()
        key = id(node)
        if leaving:
            children = _children(node)
            if isinstance(node, yaml.ScalarNode):
                size[key] = len(node.value.encode("utf-8", "surrogatepass")) + 1
                height[key] = 0
            else:
                size[key] = 2 + sum(size[id(child)] for child in children)
                height[key] = 1 + max((height[id(c)] for c in children), default=0)
            active.discard(key)
            done.add(key)
            order.append(node)
            continue
        if key in done:
            continue
        if key in active:
            # Only the nodes on the path from the root are active: this node
            # is its own ancestor, reached again through an alias.
            return (
                node.start_mark.line + 1,
                f"invalid YAML: anchor {_anchor_name(node, text)!r} defined on "
                "this line is used inside itself; a configuration cannot "
                "refer to itself",
            )
        active.add(key)
        todo.append((node, True))
        for child in _children(node):
            uses[id(child)] = uses.get(id(child), 0) + 1
            todo.append((child, False))
    if height[id(root)] > MAX_DEPTH:
        node = root
        for _ in range(MAX_DEPTH):
            node = max(_children(node), key=lambda child: height[id(child)])
        return (
            node.start_mark.line + 1,
            f"invalid YAML: mappings and lists nested more than {MAX_DEPTH} "
            "levels deep (this line starts the next level)",
        )
    total = size[id(root)]
    if total <= limit:
        return None
    # Name the anchor to blame. Its copies add its size times the number of
    # places it ends up in, less the one it is defined in; in a nested bomb
    # every level adds about as much, and the innermost, the most copied,
    # is the one to name. Reversed post-order visits every node after all
    # the nodes that contain it, so each count is complete when used.
    copies = {id(root): 1}
    for node in reversed(order):
        for child in _children(node):
            copies[id(child)] = copies.get(id(child), 0) + copies[id(node)]
    anchored = [n for n in order if uses.get(id(n), 0) > 1] or [root]
    added = {id(n): size[id(n)] * (copies[id(n)] - 1) for n in anchored}
    most = max(added.values())
    worst = max(
        (n for n in anchored if 2 * added[id(n)] >= most),
        key=lambda n: (copies[id(n)], -n.start_mark.line),
    )
    return (
        worst.start_mark.line + 1,
        f"invalid YAML: anchor {_anchor_name(worst, text)!r} defined on this line "
        f"appears {copies[id(worst)]:,} times once its aliases are expanded: the "
        f"document would be {total:,} bytes, more than the limit of {limit:,} "
        "bytes; anchor smaller values or use them less often",
    )


def line_of(container, key=None):
    """Return the line of ``key`` in ``container`` (or of the container)."""
    if key is not None:
        lines = getattr(container, "lines", None)
        if isinstance(lines, dict) and key in lines:
            return lines[key]
        if isinstance(lines, list) and isinstance(key, int) and key < len(lines):
            return lines[key]
    return getattr(container, "line", 0)

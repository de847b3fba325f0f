"""Small helpers of the configuration parser: patterns, suggestions, walks."""

import difflib
import re

__all__ = [
    "DOCKER_HOST_RE",
    "DURATION_RE",
    "RESTART_RE",
    "SHM_RE",
    "SLUG_RE",
    "VAR_NAME_RE",
    "VOLUME_MODES",
    "KeysAsList",
    "child",
    "cycles",
    "env_location",
    "fmt_list",
    "plain",
    "suggest",
    "with_defaults",
]

SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
SHM_RE = re.compile(r"^\d+(\.\d+)?\s*[bkmgBKMG]?[bB]?$")
DOCKER_HOST_RE = re.compile(r"^(unix|tcp|ssh|http|https|npipe)://\S+$")
VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated", "consistent"}


def suggest(word, choices):
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fmt_list(values):
    return ", ".join(str(v) for v in values)


class KeysAsList(list):
    """The keys of a long-form depends_on mapping, with their lines."""

    def __init__(self, mapping):
        super().__init__(str(k) for k in mapping)
        lines = getattr(mapping, "lines", {})
        self.lines = [lines.get(k, getattr(mapping, "line", 0)) for k in mapping]
        self.line = getattr(mapping, "line", 0)


def env_location(values, variable):
    """Return ``(container, key)`` of ``variable`` in a service's environment."""
    environment = values.get("environment") if isinstance(values, dict) else None
    if isinstance(environment, dict):
        return environment, variable
    if isinstance(environment, list):
        for i, item in enumerate(environment):
            if isinstance(item, str) and item.partition("=")[0] == variable:
                return environment, i
    return values, "environment"


def child(container, key, name):
    """Return ``container[key][name]`` (or ``container[name]``) or the parent."""
    parent = container[key] if key is not None else container
    if isinstance(parent, dict) and isinstance(parent.get(name), (dict, list)):
        return parent[name]
    return parent


def with_defaults(text):
    """Return ``text`` with references replaced by their defaults (or 1)."""
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}$]*))?\}|\$\$")

    def substitute(match):
        if match.group(0) == "$$":
            return "$"
        return match.group(2) if match.group(2) is not None else "1"

    return pattern.sub(substitute, text)


def cycles(graph):
    """Return each dependency cycle once, as ``[a, b, ..., a]``."""
    # A depth-first search with its own stack: a file may chain thousands of
    # dependencies, far past Python's recursion limit.
    state, path, found = {}, [], []
    for start in graph:
        if start in state:
            continue
        state[start] = "active"
        path.append(start)
        pending = [iter(graph.get(start, []))]
        while pending:
            for dep in pending[-1]:
                if dep not in graph:
                    continue
                if state.get(dep) == "active":
                    found.append(path[path.index(dep) :] + [dep])
                elif dep not in state:
                    state[dep] = "active"
                    path.append(dep)
                    pending.append(iter(graph.get(dep, [])))
                    break
            else:
                pending.pop()
                state[path.pop()] = "done"
    return found


def plain(value):
    """Return ``value`` with LineDict/LineList turned into dict/list."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

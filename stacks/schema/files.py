"""Helpers to check the configuration files other apps own.

``retention-policies.yaml`` and ``backup-strategies.yaml`` sit next to
``stacks.yaml`` and are checked (and imported) by the retention and backups
apps, registered as companions of the import
(:mod:`stacks.config.companions`). They share this checker: issues with
file, line and key path, known top-level keys, environment names, YAML
booleans (the seed compared the string ``"true"`` with Python's ``True``),
day counts and cron schedules.
"""

import difflib

from croniter import croniter

from .loader import Issue, line_of

__all__ = ["FileChecker"]

_STRING_BOOLEANS = {"true", "false", "yes", "no"}


class FileChecker:
    """Collect the issues of one configuration file."""

    def __init__(self, file, environments):
        self.file = file
        self.environments = environments
        self.errors = []

    def error(self, container, key, path, message):
        self.errors.append(Issue(self.file, line_of(container, key), path, message))

    def top(self, doc, allowed):
        if not isinstance(doc, dict):
            self.errors.append(
                Issue(self.file, 1, "", "expected a mapping at the top level")
            )
            return False
        for key in doc:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(doc, key, str(key), f"unknown key {key!r}{hint}")
        return True

    def keys(self, container, path, allowed, extra_ok=()):
        """Report the keys of ``container`` that are not ``allowed``."""
        for key in container:
            if key in allowed or key in extra_ok:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(container, key, f"{path}.{key}", f"unknown key {key!r}{hint}")

    def section(self, doc, key):
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(doc, key, key, "expected a mapping")
            return {}
        return value

    def unknown(self, container, key, path, what, name, known):
        """Report ``name`` unknown among ``known``, suggesting a close one."""
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.error(container, key, path, f"unknown {what} {name!r}{hint}")

    def environment_names(self, doc, key):
        section = self.section(doc, key)
        for name in section:
            self.environment_name(section, name, f"{key}.{name}", name)
        return section

    def environment_name(self, container, key, path, name):
        if name not in self.environments:
            close = difflib.get_close_matches(str(name), sorted(self.environments), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(container, key, path, f"unknown environment {name!r}{hint}")

    def booleans(self, value, path, container=None, key=None):
        """Report string values that read as booleans, anywhere in ``value``."""
        if isinstance(value, dict):
            for k, v in value.items():
                self.booleans(v, f"{path}.{k}" if path else str(k), value, k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.booleans(v, path, value, i)
        elif isinstance(value, str) and value.strip().lower() in _STRING_BOOLEANS:
            self.error(
                container,
                key,
                path,
                f"{value!r} is a string; write {value.strip().lower()} without quotes "
                "for a boolean",
            )

    def days(self, container, key, path):
        value = container.get(key)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.error(
                container, key, path, f"expected a number of days, got {value!r}"
            )

    def schedule(self, container, key, path):
        value = container.get(key)
        if value is None:
            return
        if (
            not isinstance(value, str)
            or len(value.split()) != 5
            or not croniter.is_valid(value)
        ):
            self.error(
                container, key, path, f"{value!r} is not a five-field cron schedule"
            )

"""Validation of ``configs/stacks.yaml`` into plain, model-shaped data.

:func:`parse_stacks` checks a loaded document and returns a
:class:`StacksConfig` of dicts ready to be written to the models, plus every
:class:`~stacks.schema.loader.Issue` found (errors) and warnings (ignored
legacy keys). Each issue names the file, the line and the key path.

The rules are split by what they check: :mod:`.services` (a service's
fields, also used for one service edited alone), :mod:`.topology` (volumes,
networks, stacks and their dependencies) and :mod:`.environments`
(environments, overrides and the checks across them). This module holds
the reporting helpers they share and the order in which a document is
checked.
"""

from dataclasses import dataclass, field

from ..secrets import invalid_references
from .common import (
    DURATION_RE,
    RESTART_RE,
    SLUG_RE,
    suggest,
)
from .environments import EnvironmentRules
from .hostsafety import HostSafetyRules
from .keys import (
    CONFIG_KEYS,
    DEFAULT_CONFIG,
    LEGACY_CONFIG_KEYS,
    REQUIRED_TOP_KEYS,
    TEMPLATE_KEYS,
    TOP_KEYS,
)
from .loader import Issue, LineDict, line_of
from .secretrules import SecretRules
from .services import ServiceRules
from .topology import TopologyRules

__all__ = ["StacksConfig", "parse_stacks"]


@dataclass
class StacksConfig:
    """``stacks.yaml`` validated, in model terms, in file order."""

    config: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    stacks: dict = field(default_factory=dict)
    networks: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    environments: dict = field(default_factory=dict)
    # Companion files checked with it: {filename: (shown name, document)}.
    companions: dict = field(default_factory=dict)

    def environment_names(self):
        """Return every environment name and alias."""
        names = set(self.environments)
        names.update(e["alias"] for e in self.environments.values() if e["alias"])
        return names

    def environment_lookup(self):
        """Return ``{name or alias: environment name}``."""
        names = {name: name for name in self.environments}
        for name, env in self.environments.items():
            if env["alias"]:
                names[env["alias"]] = name
        return names


class ParserBase:
    """Reporting and generic checks shared by the rule mixins."""

    def __init__(self, file):
        self.file = file
        self.errors = []
        self.warnings = []
        self.result = StacksConfig()
        # (section, name) of the names already reported as invalid, so a
        # reference to one is not reported again as unknown.
        self.invalid_names = set()

    # -- reporting
    def error(self, container, key, path, message):
        self.errors.append(Issue(self.file, line_of(container, key), path, message))

    def warn(self, container, key, path, message):
        self.warnings.append(Issue(self.file, line_of(container, key), path, message))

    # -- generic checks
    def mapping(self, value, container, key, path):
        """Return ``value`` if it is a mapping, else report and return None."""
        if isinstance(value, dict):
            return value
        if value is None:
            return LineDict()
        self.error(
            container, key, path, f"expected a mapping, got {type(value).__name__}"
        )
        return None

    def keys(self, doc, path, allowed, legacy=None, extra_ok=(), allow_x=False):
        """Report unknown keys of ``doc``; return the legacy ones found."""
        found_legacy = []
        for key in doc:
            if key in allowed or key in extra_ok:
                continue
            if legacy and key in legacy:
                self.warn(doc, key, f"{path}.{key}", f"ignored: {legacy[key]}")
                found_legacy.append(key)
                continue
            if isinstance(key, str) and key.startswith("x-") and (extra_ok or allow_x):
                continue
            choices = list(allowed) + list(extra_ok)
            self.error(
                doc,
                key,
                f"{path}.{key}" if path else str(key),
                f"unknown key {key!r}{suggest(key, choices)}",
            )
        return found_legacy

    def boolean(self, doc, key, path, default):
        value = doc.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(doc, key, path, f"expected true or false, got {value!r}")
            return default
        return value

    def string(self, doc, key, path, default="", max_length=None):
        value = doc.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or isinstance(value, (dict, list)):
            self.error(doc, key, path, f"expected a string, got {type(value).__name__}")
            return default
        value = str(value)
        if max_length and len(value) > max_length:
            self.error(doc, key, path, f"longer than {max_length} characters")
        return value

    def name_list(self, doc, key, path):
        """Return ``(names, list)`` of a list of names (strings)."""
        value = doc.get(key)
        if value is None:
            return [], None
        if not isinstance(value, list):
            self.error(doc, key, path, "expected a list")
            return [], None
        names = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(value, i, path, f"expected a name, got {item!r}")
                continue
            if item in names:
                self.error(value, i, path, f"{item!r} is listed twice")
                continue
            names.append(item)
        return names, value

    def slug(self, container, key, path, name, max_length):
        if not isinstance(name, str) or not SLUG_RE.match(name):
            self.error(
                container,
                key,
                path,
                f"invalid name {name!r}: use letters, digits, '-' and '_'",
            )
        elif len(name) > max_length:
            self.error(
                container, key, path, f"name longer than {max_length} characters"
            )
        else:
            return True
        if isinstance(name, str):
            self.invalid_names.add((path.partition(".")[0], name))
        return False

    def unknown(self, container, key, path, section, name, message):
        """Report ``message`` about an unknown name, unless already invalid."""
        if (section, name) not in self.invalid_names:
            self.error(container, key, path, message)

    def references_ok(self, container, key, path, value):
        for text in invalid_references(value):
            self.error(
                container,
                key,
                path,
                f"invalid variable reference in {text!r} (write $$ for a literal $)",
            )

    # -- document
    def parse(self, doc):
        if not isinstance(doc, dict):
            self.errors.append(
                Issue(self.file, 1, "", "expected a mapping at the top level")
            )
            return self.result
        # "x-" keys hold YAML anchors for reuse, as in Compose.
        self.keys(doc, "", TOP_KEYS, allow_x=True)
        for key in REQUIRED_TOP_KEYS:
            if key not in doc:
                self.errors.append(Issue(self.file, 1, key, "missing required section"))
        self.parse_config(doc)
        volumes_doc = self.mapping(doc.get("volumes"), doc, "volumes", "volumes")
        networks_doc = self.mapping(
            doc.get("stack_networks"), doc, "stack_networks", "stack_networks"
        )
        services_doc = self.mapping(doc.get("services"), doc, "services", "services")
        stacks_doc = self.mapping(doc.get("stacks"), doc, "stacks", "stacks")
        envs_doc = self.mapping(
            doc.get("environments"), doc, "environments", "environments"
        )
        if volumes_doc is not None:
            self.parse_volumes(volumes_doc)
        if networks_doc is not None:
            self.parse_networks(networks_doc)
        if services_doc is not None:
            self.parse_services(services_doc)
        if stacks_doc is not None:
            self.parse_stacks(stacks_doc)
        self.check_ownership()
        self.check_service_dependencies()
        self.check_service_volumes()
        self.check_default_subnets()
        if envs_doc is not None:
            self.parse_environments(envs_doc)
            self.check_environments()
        return self.result

    # -- config
    def parse_config(self, doc):
        config = dict(DEFAULT_CONFIG)
        self.result.config = config
        if "config" not in doc:
            return
        section = self.mapping(doc["config"], doc, "config", "config")
        if section is None:
            return
        self.keys(
            section,
            "config",
            CONFIG_KEYS,
            LEGACY_CONFIG_KEYS,
            extra_ok=("health_checks",),
        )
        config["project_name"] = self.string(
            section,
            "project_name",
            "config.project_name",
            DEFAULT_CONFIG["project_name"],
        )
        restart = self.string(
            section,
            "default_restart_policy",
            "config.default_restart_policy",
            DEFAULT_CONFIG["default_restart_policy"],
        )
        if not RESTART_RE.match(restart):
            self.error(
                section,
                "default_restart_policy",
                "config.default_restart_policy",
                f"invalid restart policy {restart!r} "
                "(no, always, unless-stopped, on-failure[:N])",
            )
        config["default_restart_policy"] = restart
        key = "healthcheck_templates"
        if "health_checks" in section:
            # The seed's name for the same section.
            self.warn(
                section,
                "health_checks",
                "config.health_checks",
                "renamed to healthcheck_templates; read as such",
            )
            if key not in section:
                key = "health_checks"
        templates = self.mapping(section.get(key), section, key, f"config.{key}")
        parsed = {}
        for name, values in (templates or {}).items():
            path = f"config.{key}.{name}"
            values = self.mapping(values, templates, name, path)
            if values is None:
                continue
            self.keys(values, path, TEMPLATE_KEYS)
            parsed[str(name)] = self.healthcheck_values(values, path)
        config["healthcheck_templates"] = parsed

    def healthcheck_values(self, values, path):
        result = {}
        for key, value in values.items():
            if key in ("interval", "timeout", "start_period", "start_interval"):
                if not isinstance(value, str) or not DURATION_RE.match(value):
                    self.error(
                        values,
                        key,
                        f"{path}.{key}",
                        f"invalid duration {value!r} (e.g. 30s, 1m30s, 500ms)",
                    )
                    continue
            elif key == "retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    self.error(
                        values, key, f"{path}.{key}", f"expected a count, got {value!r}"
                    )
                    continue
            elif key == "disable":
                if not isinstance(value, bool):
                    self.error(values, key, f"{path}.{key}", "expected true or false")
                    continue
            elif key == "test":
                if isinstance(value, list):
                    if not value or not all(isinstance(v, str) for v in value):
                        self.error(
                            values, key, f"{path}.{key}", "expected a list of strings"
                        )
                        continue
                    if value[0] not in ("CMD", "CMD-SHELL", "NONE"):
                        self.error(
                            values,
                            key,
                            f"{path}.{key}",
                            "a test list starts with CMD, CMD-SHELL or NONE",
                        )
                        continue
                    value = list(value)
                elif not isinstance(value, str):
                    self.error(
                        values, key, f"{path}.{key}", "expected a string or a list"
                    )
                    continue
                self.references_ok(values, key, f"{path}.{key}", value)
            elif key == "template":
                value = str(value)
            result[key] = value
        return result


class _Parser(
    ServiceRules,
    TopologyRules,
    EnvironmentRules,
    HostSafetyRules,
    SecretRules,
    ParserBase,
):
    """The whole ``stacks.yaml`` parser."""


def parse_stacks(document, file):
    """Validate a loaded ``stacks.yaml`` document.

    Returns ``(StacksConfig, errors, warnings)``; the config is only
    meaningful when ``errors`` is empty.
    """
    parser = _Parser(file)
    result = parser.parse(document)
    return result, parser.errors, parser.warnings

"""Rules for services: the fields of a service or an environment override."""

from ..secrets import invalid_references
from .common import (
    RESTART_RE,
    SHM_RE,
    VAR_NAME_RE,
    VOLUME_MODES,
    KeysAsList,
    fmt_list,
    plain,
    suggest,
    with_defaults,
)
from .keys import (
    LEGACY_SERVICE_KEYS,
    PASSTHROUGH_KEYS,
    RESERVED_SERVICE_NAMES,
    SERVICE_KEYS,
)
from .values import (
    HEALTHCHECK_KEYS,
    expand_healthcheck,
    parse_port,
)

__all__ = ["ServiceRules"]


class ServiceRules:
    """Parse ``services`` and the fields of one service or override."""

    # -- services
    def parse_services(self, doc):
        templates = self.result.config["healthcheck_templates"]
        for name, values in doc.items():
            path = f"services.{name}"
            if not self.slug(doc, name, path, name, 80):
                continue
            if name in RESERVED_SERVICE_NAMES:
                self.error(
                    doc,
                    name,
                    path,
                    f"{name!r} is reserved ({RESERVED_SERVICE_NAMES[name]}); "
                    "name the service otherwise",
                )
                continue
            values = self.mapping(values, doc, name, path)
            if values is None:
                continue
            self.keys(
                values,
                path,
                SERVICE_KEYS,
                LEGACY_SERVICE_KEYS,
                extra_ok=PASSTHROUGH_KEYS,
            )
            service = self.service_fields(values, path, templates, override=False)
            if not service["restart"]:
                service["restart"] = self.result.config["default_restart_policy"]
            service["stack"] = None
            service["order"] = 0
            depends, depends_doc = self.depends_on(values, path)
            service["depends_on"] = depends
            service["_depends_doc"] = depends_doc
            service["_doc"] = (doc, name)
            service["_values"] = values
            if not service.get("image") and not service.get("build"):
                self.error(doc, name, path, "a service needs an image or a build")
            self.result.services[name] = service

    def depends_on(self, values, path):
        value = values.get("depends_on")
        if value is None:
            return [], None
        if isinstance(value, dict):
            # Compose's long form: {service: {condition: ...}}.
            return [str(k) for k in value], KeysAsList(value)
        names, listed = self.name_list(values, "depends_on", f"{path}.depends_on")
        return names, listed

    def service_fields(self, values, path, templates, *, override):
        """Return the model fields of a service (or override) mapping."""
        result = {}
        if not override:
            result["description"] = self.string(
                values, "description", f"{path}.description", max_length=200
            )
            result["category"] = self.string(
                values, "category", f"{path}.category", max_length=40
            )
            result["build"] = ""
            result["extra"] = {}
            build = values.get("build")
            if isinstance(build, dict):
                context = build.get("context")
                if not isinstance(context, str) or not context:
                    self.error(
                        values, "build", f"{path}.build", "a build needs a context"
                    )
                else:
                    result["build"] = context
                    if set(build) != {"context"}:
                        result["extra"]["build"] = dict(build)
            elif build is not None:
                result["build"] = self.string(
                    values, "build", f"{path}.build", max_length=255
                )
        present = (lambda k: k in values) if override else (lambda k: True)
        if present("image"):
            result["image"] = self.string(
                values, "image", f"{path}.image", max_length=255
            )
            self.references_ok(values, "image", f"{path}.image", result["image"])
        for key in ("command", "entrypoint"):
            if present(key):
                result[key] = self.command(values, key, f"{path}.{key}")
        if present("environment"):
            result["environment"] = self.environment(
                values, f"{path}.environment", allow_null=override
            )
        if present("ports"):
            result["ports"] = self.ports(values, f"{path}.ports")
        if present("volumes"):
            result["volumes"] = self.volumes(values, f"{path}.volumes")
        if present("healthcheck"):
            result["healthcheck"] = self.healthcheck(
                values, f"{path}.healthcheck", templates
            )
        if present("gpu"):
            result["gpu"] = self.boolean(values, "gpu", f"{path}.gpu", False)
        if present("gpu_count"):
            count = values.get("gpu_count", "all")
            text = "all" if count is None else str(count)
            if isinstance(count, bool) or not (
                text == "all" or (text.isdigit() and int(text) > 0)
            ):
                self.error(
                    values,
                    "gpu_count",
                    f"{path}.gpu_count",
                    f"expected 'all' or a count, got {count!r}",
                )
                text = "all"
            result["gpu_count"] = text
        if present("restart"):
            restart = self.string(values, "restart", f"{path}.restart", "")
            if restart and not RESTART_RE.match(restart):
                self.error(
                    values,
                    "restart",
                    f"{path}.restart",
                    f"invalid restart policy {restart!r} (no, always, unless-stopped, "
                    "on-failure[:N])",
                )
            result["restart"] = restart
        if present("user"):
            result["user"] = self.string(values, "user", f"{path}.user", max_length=40)
        if present("shm_size"):
            shm = self.string(values, "shm_size", f"{path}.shm_size", max_length=20)
            if shm and not SHM_RE.match(shm):
                self.error(
                    values, "shm_size", f"{path}.shm_size", f"invalid size {shm!r}"
                )
            result["shm_size"] = shm
        if present("extra"):
            extra = values.get("extra")
            if extra is None:
                extra = {}
            if not isinstance(extra, dict):
                self.error(values, "extra", f"{path}.extra", "expected a mapping")
                extra = {}
            if override:
                result["extra"] = plain(extra)
            else:
                result["extra"].update(plain(extra))
        if not override:
            for key in PASSTHROUGH_KEYS:
                if key in values:
                    result["extra"][key] = plain(values[key])
            for key in values:
                if isinstance(key, str) and key.startswith("x-"):
                    result["extra"][key] = plain(values[key])
        return result

    def command(self, values, key, path):
        value = values.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            self.references_ok(values, key, path, value)
            return value
        if isinstance(value, list) and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
        ):
            items = [str(v) for v in value]
            self.references_ok(values, key, path, items)
            return items
        self.error(values, key, path, "expected a string or a list of strings")
        return None

    def environment(self, values, path, *, allow_null):
        value = values.get("environment")
        result = {}
        if value is None:
            return result
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) or "=" not in item:
                    self.error(value, i, path, f"expected NAME=value, got {item!r}")
                    continue
                name, _, text = item.partition("=")
                self.env_value(value, i, path, name, text, result, allow_null)
            return result
        if not isinstance(value, dict):
            self.error(
                values,
                "environment",
                path,
                "expected a mapping or a list of NAME=value",
            )
            return result
        for name, text in value.items():
            self.env_value(value, name, path, name, text, result, allow_null)
        return result

    def env_value(self, container, key, path, name, text, result, allow_null):
        name = str(name)
        if not VAR_NAME_RE.match(name):
            self.error(
                container, key, f"{path}.{name}", f"invalid variable name {name!r}"
            )
            return
        if name in result:
            self.error(container, key, f"{path}.{name}", "variable set twice")
            return
        if text is None:
            if allow_null:
                result[name] = None
                return
            self.error(
                container,
                key,
                f"{path}.{name}",
                f"no value (write a value or a reference such as ${{{name}}})",
            )
            return
        if isinstance(text, bool):
            text = "true" if text else "false"
        elif isinstance(text, (int, float)):
            text = str(text)
        elif not isinstance(text, str):
            self.error(container, key, f"{path}.{name}", "expected a string value")
            return
        self.references_ok(container, key, f"{path}.{name}", text)
        result[name] = text

    def ports(self, values, path):
        value = values.get("ports")
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(values, "ports", path, "expected a list")
            return []
        result = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                self.error(
                    value, i, path, "only the short syntax is supported, e.g. '8080:80'"
                )
                continue
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.error(value, i, path, f"expected a port string, got {item!r}")
                continue
            text = str(item)
            if invalid_references(text):
                self.references_ok(value, i, path, text)
                continue
            try:
                parse_port(with_defaults(text))
            except ValueError as exc:
                self.error(value, i, path, str(exc))
                continue
            result.append(text)
        return result

    def volumes(self, values, path):
        value = values.get("volumes")
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(values, "volumes", path, "expected a list")
            return []
        result = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(
                    value, i, path, f"only the short syntax is supported, got {item!r}"
                )
                continue
            parts = item.split(":")
            if len(parts) > 3 or not all(parts[:2]):
                self.error(value, i, path, f"{item!r} is not SOURCE:TARGET[:MODE]")
                continue
            if len(parts) == 3 and not set(parts[2].split(",")) <= VOLUME_MODES:
                self.error(value, i, path, f"{item!r}: unknown mode {parts[2]!r}")
                continue
            if len(parts) >= 2 and not parts[1].startswith("/"):
                self.error(
                    value, i, path, f"{item!r}: the target must be an absolute path"
                )
                continue
            self.references_ok(value, i, path, item)
            result.append(item)
        return result

    def healthcheck(self, values, path, templates):
        value = values.get("healthcheck")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(values, "healthcheck", path, "expected a mapping")
            return {}
        self.keys(value, path, HEALTHCHECK_KEYS)
        parsed = self.healthcheck_values(value, path)
        template = parsed.get("template")
        if template and template not in templates:
            self.error(
                value,
                "template",
                f"{path}.template",
                f"unknown healthcheck template {template!r}"
                f"{suggest(template, templates)} "
                f"(defined: {fmt_list(templates) or 'none'})",
            )
            parsed.pop("template")
        return expand_healthcheck(parsed, templates)

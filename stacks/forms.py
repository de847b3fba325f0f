"""Admin forms of services and overrides: a field per common Compose key.

Services and overrides keep Compose values in JSON fields. These forms
show the common keys (image, command, environment, ports, volumes,
depends_on, healthcheck) as fields people can read and edit: environment
as ``KEY=value`` lines, ports and volumes one per line, a command as the
text Compose takes (or a JSON list). Everything else stays in a JSON box.
A field left as it was keeps the stored value exactly (an integer port
stays an integer). What a form produces goes through the same gate as any
configuration change (:class:`stacks.config.gate.GatedFormMixin`, added by
the admin) and the same audit.
"""

import json

from django import forms
from django.utils.functional import cached_property

from .config.gate import form_field
from .models import Service, ServiceOverride
from .schema.keys import OVERRIDE_KEYS

__all__ = [
    "CommandField",
    "HealthcheckFields",
    "KeyValueField",
    "LinesField",
    "ServiceForm",
    "ServiceOverrideForm",
]

_MONO = {"class": "vLargeTextField portal-mono", "rows": 3, "spellcheck": "false"}
# The healthcheck keys with a field of their own, besides the test.
_HEALTH_PARTS = ("interval", "timeout", "retries", "start_period", "template")


def _text(value):
    """Return a scalar as it is typed (JSON for anything structured)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _TextValueField(forms.CharField):
    """A CharField that holds a structured value; unchanged text keeps it."""

    def __init__(self, *, rows=3, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={**_MONO, "rows": rows}))
        super().__init__(**kwargs)

    def as_text(self, value):
        raise NotImplementedError

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return self.as_text(value)

    def has_changed(self, initial, data):
        try:
            parsed = self.to_python(data)
        except forms.ValidationError:
            return True
        return self.as_text(initial) != self.as_text(parsed)


class LinesField(_TextValueField):
    """A list, one entry per line (Compose's short syntax).

    A line holding a JSON object is a long-syntax entry; the whole text may
    also be one JSON list.
    """

    def as_text(self, value):
        return "\n".join(_text(item) for item in (value or []))

    def to_python(self, value):
        text = (value or "").strip()
        if text.startswith("["):
            try:
                found = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError(f"Not a JSON list: {exc}.") from exc
            if not isinstance(found, list):
                raise forms.ValidationError("Expected a JSON list.")
            return found
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    raise forms.ValidationError(
                        f"Line {number}: not a JSON object ({exc})."
                    ) from exc
            else:
                items.append(line)
        return items


class KeyValueField(_TextValueField):
    """A mapping as ``KEY=value`` lines; a line ``KEY`` alone is ``KEY: null``
    (Compose passes the variable through from where it runs)."""

    def as_text(self, value):
        lines = []
        for key, item in (value or {}).items():
            lines.append(str(key) if item is None else f"{key}={_text(item)}")
        return "\n".join(lines)

    def to_python(self, value):
        text = (value or "").strip()
        if text.startswith("{"):
            try:
                found = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError(f"Not a JSON object: {exc}.") from exc
            if not isinstance(found, dict):
                raise forms.ValidationError("Expected a JSON object.")
            return found
        mapping = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, item = line.partition("=")
            key = key.strip()
            if not key or " " in key:
                raise forms.ValidationError(
                    f"Line {number}: {line.strip()[:60]!r} is not KEY=value."
                )
            if key in mapping:
                raise forms.ValidationError(f"Line {number}: {key} is set twice.")
            mapping[key] = item if sep else None
        return mapping


class CommandField(_TextValueField):
    """A command: the text Compose splits like a shell, or a JSON list."""

    def __init__(self, **kwargs):
        super().__init__(rows=2, **kwargs)

    def as_text(self, value):
        if value in (None, "", []):
            return ""
        return value if isinstance(value, str) else json.dumps(value)

    def to_python(self, value):
        text = (value or "").strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                found = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError(f"Not a JSON list: {exc}.") from exc
            if not isinstance(found, list) or not all(
                isinstance(part, (str, int, float)) for part in found
            ):
                raise forms.ValidationError("Expected a JSON list of strings.")
            return found
        return text


class HealthcheckFields(forms.Form):
    """The healthcheck of a service or override, a field per key."""

    healthcheck = CommandField(
        label="Healthcheck test",
        help_text="A shell command (Compose runs it with CMD-SHELL), or a "
        'JSON list such as ["CMD", "redis-cli", "ping"].',
    )
    healthcheck_interval = forms.CharField(
        required=False, label="Interval", help_text="30s, 1m30s"
    )
    healthcheck_timeout = forms.CharField(required=False, label="Timeout")
    healthcheck_retries = forms.IntegerField(
        required=False, min_value=0, label="Retries"
    )
    healthcheck_start_period = forms.CharField(required=False, label="Start period")
    healthcheck_template = forms.CharField(
        required=False,
        label="Template",
        help_text="A name from config.healthcheck_templates in stacks.yaml.",
    )


def _health_initial(health):
    health = health or {}
    initial = {"healthcheck": health.get("test")}
    for part in _HEALTH_PARTS:
        initial[f"healthcheck_{part}"] = health.get(part)
    return initial


def _health_value(original, cleaned):
    """Return the healthcheck mapping from the form's parts.

    Keys without a field (``disable``, anything else) are kept as they were.
    """
    health = dict(original or {})
    parts = {"test": cleaned.get("healthcheck")}
    for part in _HEALTH_PARTS:
        parts[part] = cleaned.get(f"healthcheck_{part}")
    for key, value in parts.items():
        if value in (None, ""):
            health.pop(key, None)
        else:
            health[key] = value
    return health


_HEALTH_NAMES = ("healthcheck", *(f"healthcheck_{p}" for p in _HEALTH_PARTS))


class ServiceForm(HealthcheckFields, forms.ModelForm):
    """A service's definition with a field per common key."""

    command = CommandField(help_text="Text (split like a shell) or a JSON list.")
    entrypoint = CommandField()
    environment = KeyValueField(
        rows=6,
        help_text="One KEY=value per line; secrets as ${VAR} references, "
        "resolved at start.",
    )
    ports = LinesField(help_text='One per line, Compose short syntax: "8080:80".')
    volumes = LinesField(help_text='One per line: "data:/path", "./conf:/etc/x:ro".')

    class Meta:
        model = Service
        fields = [
            "stack",
            "name",
            "description",
            "category",
            "order",
            "image",
            "build",
            "command",
            "entrypoint",
            "environment",
            "ports",
            "volumes",
            "healthcheck",
            "depends_on",
            "restart",
            "user",
            "shm_size",
            "gpu",
            "gpu_count",
            "extra",
        ]

    # Fields whose stored value is kept exactly when their text is unchanged.
    TEXT_FIELDS = ("command", "entrypoint", "environment", "ports", "volumes")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.update(_health_initial(self.instance.healthcheck))
        if "extra" in self.fields:
            self.fields["extra"].widget.attrs.update(_MONO)

    @cached_property
    def changed_data(self):
        # The audit and the gate look for the model field: a healthcheck
        # part that changed changes "healthcheck".
        changed = list(super().changed_data)
        if "healthcheck" not in changed and any(n in changed for n in _HEALTH_NAMES):
            changed.append("healthcheck")
        return changed

    def gate_field_for(self, issue):
        """Return the field an issue of the gate is about (healthcheck parts
        have fields of their own)."""
        parts = issue.path.split(".")
        if len(parts) >= 4 and parts[2] == "healthcheck":
            part = parts[3].split("[")[0]
            if part in _HEALTH_PARTS:
                return f"healthcheck_{part}"
        return form_field(self.instance, issue, self.fields)

    def clean(self):
        cleaned = super().clean()
        for name in self.TEXT_FIELDS:
            if name in cleaned and name not in self.changed_data:
                cleaned[name] = getattr(self.instance, name)
        if any(name in self.changed_data for name in _HEALTH_NAMES):
            cleaned["healthcheck"] = _health_value(self.instance.healthcheck, cleaned)
        else:
            cleaned["healthcheck"] = self.instance.healthcheck
        return cleaned


class ServiceOverrideForm(HealthcheckFields, forms.ModelForm):
    """An environment's override of a service: a field per common key.

    A field left empty does not override the service's value. Keys without
    a field (gpu, restart, user, shm_size, extra...) are in "Other keys",
    a JSON object; a key named there wins over its field (so an empty list
    can be set, ``{"ports": []}``).
    """

    image = forms.CharField(required=False, max_length=255)
    command = CommandField(help_text="Text (split like a shell) or a JSON list.")
    # The model's "environment" is the environment overridden; the Compose
    # key of that name has this form name.
    environment_variables = KeyValueField(
        rows=5,
        label="Environment",
        help_text="KEY=value per line, merged into the service's environment.",
    )
    ports = LinesField(help_text="Replace the service's ports, one per line.")
    volumes = LinesField(help_text="Replace the service's volumes, one per line.")

    class Meta:
        model = ServiceOverride
        fields = ["environment", "service", "values"]
        labels = {"environment": "Environment overridden", "values": "Other keys"}
        help_texts = {
            "values": "A JSON object with any other key ("
            f"{', '.join(OVERRIDE_KEYS)}); a key here wins over its field."
        }

    #: Override key -> the form field holding it.
    FIELD_KEYS = {
        "image": "image",
        "command": "command",
        "environment": "environment_variables",
        "ports": "ports",
        "volumes": "volumes",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "values" in self.fields:
            self.fields["values"].required = False
            self.fields["values"].widget.attrs.update(_MONO)
        values = dict(self.instance.values or {}) if self.instance.pk else {}
        self.initial.update(
            {field: values.get(key) for key, field in self.FIELD_KEYS.items()}
        )
        self.initial["image"] = values.get("image", "")
        self.initial.update(_health_initial(values.get("healthcheck")))
        self.initial["values"] = {
            k: v
            for k, v in values.items()
            if k not in self.FIELD_KEYS and k != "healthcheck"
        }
        self.order_fields(
            [
                "environment",
                "service",
                "image",
                "command",
                "environment_variables",
                "ports",
                "volumes",
                *_HEALTH_NAMES,
                "values",
            ]
        )

    @cached_property
    def changed_data(self):
        # The audit and the gate look for the model field: every key's field
        # is part of "values".
        changed = list(super().changed_data)
        parts = (*self.FIELD_KEYS.values(), *_HEALTH_NAMES)
        if "values" not in changed and any(n in changed for n in parts):
            changed.append("values")
        return changed

    def gate_field_for(self, issue):
        """Return the field an issue of the gate is about: the key's own
        field, else "Other keys"."""
        parts = issue.path.split(".")
        if "overrides" in parts:
            at = parts.index("overrides")
            if len(parts) > at + 2:
                key = parts[at + 2].split("[")[0]
                if key in self.FIELD_KEYS:
                    return self.FIELD_KEYS[key]
                if key == "healthcheck":
                    part = parts[at + 3].split("[")[0] if len(parts) > at + 3 else ""
                    if part in _HEALTH_PARTS:
                        return f"healthcheck_{part}"
                    return "healthcheck"
        return "values"

    def clean(self):
        cleaned = super().clean()
        original = dict(self.instance.values or {}) if self.instance.pk else {}
        found = {}
        for key, field in self.FIELD_KEYS.items():
            if field not in self.changed_data and key in original:
                found[key] = original[key]
                continue
            value = cleaned.get(field)
            if value not in (None, "", [], {}):
                found[key] = value
        if any(name in self.changed_data for name in _HEALTH_NAMES):
            health = _health_value(original.get("healthcheck"), cleaned)
            if health:
                found["healthcheck"] = health
        elif "healthcheck" in original:
            found["healthcheck"] = original["healthcheck"]
        other = cleaned.get("values")
        if other is not None and not isinstance(other, dict):
            self.add_error("values", "Expected a JSON object of override keys.")
            return cleaned
        found.update(other or {})
        # Stored in the order of the file's keys, so an export reads the same.
        order = {key: i for i, key in enumerate(OVERRIDE_KEYS)}
        cleaned["values"] = dict(
            sorted(found.items(), key=lambda item: order.get(item[0], len(order)))
        )
        return cleaned

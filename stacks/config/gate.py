"""One gate for every change of the configuration in the database.

Whatever the path (the import, an admin form, an admin action, a later
API), a change of environments, stacks, services, volumes, networks or their
overrides is:

1. made only by a user who holds the Admin role on every environment it
   affects (:func:`require_admin`): a service's base definition runs in
   every environment, an override in its own;
2. checked by the importer's own rules (:mod:`stacks.schema`), host policy
   included: the database as it would be after the change is exported in
   the file's shape and parsed, and the change is refused when that finds
   issues the configuration did not have before (:func:`trial`);
3. audited with a diff (``config.imported`` for an import, the admin's
   ``object.*`` entries for an edit).

The import goes through the same rules directly on the file
(:func:`stacks.config.sync.validate_configs`); the admin forms use
:class:`GatedFormMixin`.
"""

from contextlib import contextmanager

from django.core.exceptions import PermissionDenied
from django.db import transaction

from portal.permissions import user_can

from ..models import (
    ConfigValue,
    Environment,
    Network,
    NetworkOverride,
    Service,
    ServiceOverride,
    Stack,
    Volume,
)
from ..schema.keys import PASSTHROUGH_KEYS
from ..schema.parser import parse_stacks
from .export import export_data

__all__ = [
    "SOURCE",
    "ConfigChangeRefused",
    "GatedFormMixin",
    "affected_environments",
    "config_scope",
    "configuration_issues",
    "require_admin",
    "trial",
]

#: How issues of the configuration in the database name their "file".
SOURCE = "the configuration"

# Models whose rows are part of every environment's configuration.
_GLOBAL = (Service, Stack, Volume, Network, ConfigValue)


class ConfigChangeRefused(Exception):
    """A change would add issues to the configuration; ``issues`` lists them."""

    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def config_scope(model):
    """Return how rows of ``model`` belong to environments.

    ``"all"``: part of every environment's configuration (a service's base
    definition, a stack, a storage tier); ``"self"``: an environment;
    ``"environment"``: one environment, named by the row's ``environment``
    (an override, a backup policy). Models of other apps say so with a
    ``config_scope`` class attribute.
    """
    if model is Environment:
        return "self"
    if model in (ServiceOverride, NetworkOverride):
        return "environment"
    if model in _GLOBAL:
        return "all"
    scope = getattr(model, "config_scope", None)
    if scope is None:
        raise TypeError(f"{model.__name__} is not part of the configuration")
    return scope


def affected_environments(obj):
    """Return the environments whose configuration ``obj`` is part of.

    ``obj`` may be a model class (a new row of a model of scope "all").
    """
    model = obj if isinstance(obj, type) else type(obj)
    scope = config_scope(model)
    if scope == "all":
        return list(Environment.objects.all())
    if isinstance(obj, type):
        return []
    if scope == "self":
        return [obj] if obj.pk else []
    environment = getattr(obj, "environment", None)
    return [environment] if environment is not None else []


def require_admin(user, environments, *, what):
    """Raise PermissionDenied unless ``user`` is Admin on every environment."""
    for environment in environments:
        if not user_can(user, "admin", environment):
            who = getattr(user, "username", None) or "anonymous"
            raise PermissionDenied(
                f"{who} may not change {what}: it is part of environment "
                f"{environment.name}, where {who} does not hold the Admin role."
            )


def configuration_issues():
    """Return the issues the importer would find in the database's configuration."""
    _parsed, errors, _warnings = parse_stacks(export_data(), SOURCE)
    return errors


def _key(issue):
    return (issue.path, issue.message)


@contextmanager
def trial(baseline=None, *, issues=configuration_issues):
    """Try a change: yield, then check the configuration and roll it back.

    Use as ``with trial() as found: <save the change>``; afterwards
    ``found`` holds the issues the change adds (those of ``baseline``, the
    issues before, do not count). Nothing done inside the block stays.
    ``issues()`` returns the issues of the configuration in the database
    (default: of stacks.yaml's part).
    """
    if baseline is None:
        baseline = issues()
    before = {_key(issue) for issue in baseline}
    found = []
    with transaction.atomic():
        point = transaction.savepoint()
        try:
            yield found
            found.extend(issue for issue in issues() if _key(issue) not in before)
        finally:
            transaction.savepoint_rollback(point)


def form_field(obj, issue, fields):
    """Return the form field an issue of ``obj``'s change is about, or None."""
    parts = issue.path.split(".")
    if isinstance(obj, ServiceOverride | NetworkOverride):
        return "values" if "values" in fields else None
    if isinstance(obj, Service) and len(parts) >= 3 and parts[0] == "services":
        field = parts[2].split("[")[0]
        if field in PASSTHROUGH_KEYS or field.startswith("x-"):
            field = "extra"
        return field if field in fields else None
    # The segment naming the key (services.<name>.<key>); a model kept
    # deeper in its file (an item of a map) says where its keys are.
    depth = getattr(type(obj), "config_key_depth", 2)
    if len(parts) > depth:
        field = parts[depth].split("[")[0]
        # A model whose file keys differ from its fields says which is which.
        mapper = getattr(type(obj), "config_field_for", None)
        if mapper is not None:
            field = mapper(field)
        return field if field in fields else None
    return None


class GatedFormMixin:
    """A ModelForm of the configuration that goes through the gate.

    The admin sets ``gate_user`` (the requesting user) and ``gate_request``
    (to cache the issues found before the change, once per request). After
    Django's own validation, the form checks the user's Admin role on every
    environment the change touches, then tries the change in a savepoint
    and reports the importer's issues it would add on the fields they are
    about. Nothing is saved here; the admin saves afterwards as usual.
    """

    gate_user = None
    gate_request = None
    # The issues of the configuration this form changes; another app's
    # forms name their own file's check.
    gate_issues = staticmethod(configuration_issues)

    def _post_clean(self):
        super()._post_clean()
        if self.errors or self.gate_user is None:
            return
        if self.instance.pk is not None and not self.has_changed():
            # An unchanged row of a page (an inline among many) changes
            # nothing: no trial for it.
            return
        instance = self.instance
        what = f"{instance._meta.verbose_name} {instance}"
        try:
            require_admin(self.gate_user, affected_environments(instance), what=what)
        except PermissionDenied as exc:
            self.add_error(None, str(exc))
            return
        if getattr(self, "cleaned_data", {}).get("DELETE"):
            return
        adding = instance._state.adding
        with trial(self._baseline(), issues=self.gate_issues) as found:
            instance.save()
            for name, value in self._m2m_values().items():
                getattr(instance, name).set(value)
        if adding:
            # The row was rolled back: the admin's save must insert it anew.
            instance.pk = None
            instance._state.adding = True
        # A form that lays a value out over several fields says which one an
        # issue is about (gate_field_for).
        mapper = getattr(self, "gate_field_for", None)
        for issue in found:
            if mapper is not None:
                field = mapper(issue)
            else:
                field = form_field(instance, issue, self.fields)
            self.add_error(field, f"{issue.path}: {issue.message}")

    def _baseline(self):
        request = self.gate_request
        if request is None:
            return None
        cache = request.__dict__.setdefault("_config_issues_before", {})
        key = self.gate_issues
        if key not in cache:
            cache[key] = self.gate_issues()
        return cache[key]

    def _m2m_values(self):
        opts = self.instance._meta
        return {
            f.name: self.cleaned_data[f.name]
            for f in opts.many_to_many
            if f.name in self.cleaned_data
        }

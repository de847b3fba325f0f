"""Rules about credentials in ``stacks.yaml``.

Two checks of the parser:

- :meth:`SecretRules.check_hardcoded_secrets`: a hard-coded secret
  (:mod:`.literals`) that reaches a protected environment is an import
  error, with the file, the line and the key path, and the environments it
  reaches. What reaches an environment is the services' base definitions
  (less what that environment's override replaces), its overrides and its
  ``settings.variables``. Values that ``require_secret_refs`` already
  refuses (secret-named variables of a service's ``environment`` and of
  ``settings.variables``) are left to that rule, so one mistake gives one
  error. Other environments are not checked here: ``manage.py
  scan_secrets`` reports what the whole configuration holds.
- :meth:`SecretRules.credential_settings`: an environment's
  ``settings.credentials``, the knobs of the credential check
  (``stacks.credentials``): ``min_length`` and ``allow_empty``.
"""

from portal.redaction import is_secret_name

from ..secrets import references
from .keys import PASSTHROUGH_KEYS
from .literals import walk

__all__ = ["CREDENTIAL_SETTINGS_KEYS", "SecretRules"]

#: Keys of an environment's ``settings.credentials``.
CREDENTIAL_SETTINGS_KEYS = ("min_length", "allow_empty")


class SecretRules:
    """The parser's rules about credentials (mixed into the parser)."""

    def credential_settings(self, settings, path):
        """Check ``settings.credentials`` of an environment."""
        value = settings.get("credentials")
        if value is None:
            return
        if not isinstance(value, dict):
            self.error(settings, "credentials", path, "expected a mapping")
            return
        self.keys(value, path, CREDENTIAL_SETTINGS_KEYS)
        length = value.get("min_length")
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, int) or length < 1
        ):
            self.error(
                value,
                "min_length",
                f"{path}.min_length",
                f"expected a number of characters (1 or more), got {length!r}",
            )
        names, listed = self.name_list(value, "allow_empty", f"{path}.allow_empty")
        for index, name in enumerate(names):
            if not name.replace("_", "").isalnum() or name[0].isdigit():
                self.error(
                    listed,
                    index,
                    f"{path}.allow_empty",
                    f"invalid variable name {name!r}",
                )

    def check_hardcoded_secrets(self):
        """Report hard-coded secrets that reach a protected environment."""
        # One error per place, naming every protected environment it reaches.
        found = {}
        for name, env in self.result.environments.items():
            if not env["protected"]:
                continue
            for container, ckey, path, what in self._hardcoded_in(name, env):
                entry = found.setdefault(
                    (id(container), ckey, path, what), (container, [])
                )
                if name not in entry[1]:
                    entry[1].append(name)
        for (_, ckey, path, what), (container, names) in found.items():
            plural = "s" if len(names) > 1 else ""
            self.error(
                container,
                ckey,
                path,
                f"{what}, which reaches protected environment{plural} "
                f"{', '.join(names)}",
            )

    def _hardcoded_in(self, name, env):
        """Yield ``(container, key, path, what)`` reaching environment ``name``."""
        refs_rule = env["require_secret_refs"]
        for service_name, service in self.result.services.items():
            override = env["service_overrides"].get(service_name)
            values = (override or {}).get("values") or {}
            replaced = {k for k in values if k != "environment"}
            if "extra" in replaced:
                replaced.update(PASSTHROUGH_KEYS)
            overridden = set(values.get("environment") or {})
            prefix = f"services.{service_name}"
            for container, key, path, found in walk(service["_values"], prefix):
                top, variable = _top(path, prefix)
                if top in replaced or (top == "environment" and variable in overridden):
                    continue
                if refs_rule and _left_to_refs_rule(top, variable):
                    continue
                yield container, key, path, found.what
            if override is None:
                continue
            overrides, key = override["_at"]
            prefix = f"environments.{name}.overrides.{service_name}"
            for container, ckey, path, found in walk(overrides[key], prefix):
                top, variable = _top(path, prefix)
                if refs_rule and _left_to_refs_rule(top, variable):
                    continue
                yield container, ckey, path, found.what
        settings = env["_values"].get("settings")
        variables = settings.get("variables") if isinstance(settings, dict) else None
        if not isinstance(variables, dict):
            return
        secret_variables = self._secret_variables(env)
        prefix = f"environments.{name}.settings.variables"
        for variable, value in variables.items():
            if refs_rule and is_secret_name(variable):
                continue
            for _, _, path, found in walk({variable: value}, prefix):
                yield variables, variable, path, found.what
            if (
                variable in secret_variables
                and not is_secret_name(variable)
                and value not in (None, "")
            ):
                # A variable a secret field refers to (MINIO_ACCESS_KEY:
                # ${MINIO_ROOT_USER}) is a credential whatever its name.
                yield (
                    variables,
                    variable,
                    f"{prefix}.{variable}",
                    f"a literal value for {variable}, which secret fields of "
                    "services refer to (set it in configs/env/<environment>.env)",
                )

    def _secret_variables(self, env):
        """Return the variables that secret-named fields of services refer to."""
        names = set()
        for service_name in self.result.services:
            environment = self.effective(env, service_name).get("environment") or {}
            for field, value in environment.items():
                if is_secret_name(field):
                    names.update(references(value))
        return names


def _top(path, prefix):
    """Return ``(top key, variable)`` of ``path`` below ``prefix``."""
    rest = path[len(prefix) + 1 :]
    top, _, remainder = rest.partition(".")
    top = top.split("[", 1)[0]
    return top, remainder if top == "environment" else ""


def _left_to_refs_rule(top, variable):
    return top == "environment" and is_secret_name(variable)

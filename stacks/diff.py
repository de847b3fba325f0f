"""What a start would change: the running containers against the plan.

For each service of a stack, :func:`stack_diff` says what a start would do
to it, the way :func:`stacks.engine.reconcile_service` decides: ``create``
(no container), ``unchanged`` (running, same config hash), ``start`` (same
hash, stopped) or ``recreate`` (the hash differs). To know the hash, the
plan is resolved here as a start resolves it (``${VAR}`` references
replaced, the image's id looked up); the resolved values are only hashed,
never shown or kept.

Why a container would be recreated is shown as a diff of what it was made
from (label ``portal.config``, written at creation: the configuration as it
was, references unresolved, secrets redacted) against what the
configuration says now, in the same form. A hash that differs with no
difference in that text means a resolved value changed (a variable or
secret behind a reference) or the image was rebuilt under the same tag.

Nothing here is ever resolved into text: both sides hold the configured
values, with secret-named values redacted (:mod:`portal.redaction`).
"""

import difflib
import json
from functools import partial

import yaml

from portal.redaction import redact

from . import engine
from .compose import (
    compose_dict,
    recorded_config,
    render_compose,
    resolve_spec,
    stack_plan,
)
from .engine import labels
from .secrets import (
    InvalidEnvFile,
    InvalidReference,
    MissingSecret,
    environ_for,
    resolve_all,
)

__all__ = ["ServiceDiff", "redacted_compose", "stack_diff"]

#: What a start does to a service, by verdict.
VERDICTS = {
    "create": "no container: a start creates it",
    "unchanged": "running with the configuration: a start leaves it alone",
    "start": "stopped, configuration unchanged: a start starts it again",
    "recreate": "the configuration changed: a start recreates it",
    "unknown": "cannot tell what a start would do",
}


class ServiceDiff(dict):
    """One service's verdict and diff, a JSON-able dict.

    Keys: ``service``, ``container``, ``state``, ``verdict`` (create,
    unchanged, start, recreate, unknown), ``why``, ``changed`` (the keys
    whose configured values differ), ``diff`` (unified diff lines),
    ``recorded`` (whether the container carries what it was made from).
    """


def redacted_compose(plan):
    """Return the compose YAML of ``plan`` with secret-named values hidden."""
    text = render_compose(plan)
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    body = yaml.safe_dump(
        redact(compose_dict(plan)), sort_keys=False, default_flow_style=False, width=88
    )
    return header + body


def _dump(value):
    if value is None:
        return []
    return yaml.safe_dump(
        value, sort_keys=True, default_flow_style=False, width=88
    ).splitlines()


def _diff_lines(running, desired, name):
    return list(
        difflib.unified_diff(
            _dump(running),
            _dump(desired),
            fromfile=f"{name} (running)",
            tofile=f"{name} (a start applies)",
            lineterm="",
            n=2,
        )
    )


def _changed_keys(running, desired):
    keys = sorted(set(running) | set(desired))
    return [k for k in keys if running.get(k) != desired.get(k)]


def stack_diff(environment, stack, *, client=None):
    """Return what a start of ``stack`` in ``environment`` would change.

    Returns a dict: ``project``, ``services`` (a :class:`ServiceDiff` per
    configured service, in start order), ``others`` (containers of the
    project no service of the configuration names: a start leaves them),
    ``resolved`` (whether the configuration could be resolved here, else
    ``problem`` says why: verdicts are then ``unknown``) and ``summary``
    (count per verdict). Raises EngineError when Docker cannot be asked,
    ValueError (and its subclasses) when the configuration has no plan.
    """
    plan = stack_plan(environment, stack)
    client = client or engine.client_for(environment)
    with engine.engine_errors(engine.describe_host(environment)):
        states = engine.service_states(client, plan.project)
        containers = engine.project_containers(client, plan.project)
    problem = ""
    try:
        environ = environ_for(environment)
    except (MissingSecret, InvalidReference, InvalidEnvFile) as exc:
        environ, problem = None, str(exc)

    services = []
    for spec in plan.services:
        desired = json.loads(recorded_config(spec))
        state = states.get(spec.name)
        entry = ServiceDiff(
            service=spec.name,
            container=state.name if state else None,
            state=state.state if state else "missing",
            recorded=False,
            changed=[],
            diff=[],
        )
        if state is None:
            entry.update(verdict="create", why=VERDICTS["create"])
            entry["diff"] = _diff_lines(None, desired, spec.name)
            services.append(entry)
            continue
        text = state.labels.get(labels.CONFIG)
        running = json.loads(text) if text else None
        if running is not None:
            entry["recorded"] = True
            entry["changed"] = _changed_keys(running, desired)
            entry["diff"] = _diff_lines(running, desired, spec.name)
        with engine.engine_errors(engine.describe_host(environment)):
            verdict, why = _verdict(client, spec, state, environ, problem, entry)
        entry.update(verdict=verdict, why=why)
        services.append(entry)

    known = {spec.name for spec in plan.services}
    others = sorted(
        {
            labels.service_of(c.get("Labels") or {})
            for c in containers
            if labels.service_of(c.get("Labels") or {}) not in known
        }
    )
    summary = {}
    for entry in services:
        summary[entry["verdict"]] = summary.get(entry["verdict"], 0) + 1
    return {
        "environment": environment.name,
        "stack": stack.name,
        "project": plan.project,
        "services": services,
        "others": others,
        "resolved": not problem,
        "problem": problem,
        "summary": summary,
    }


def _verdict(client, spec, state, environ, problem, entry):
    """Return (verdict, why) for a service that has a container."""
    if environ is None:
        return "unknown", f"{VERDICTS['unknown']}: {problem}"
    try:
        resolved = resolve_spec(spec, partial(resolve_all, environ=environ))
    except (MissingSecret, InvalidReference) as exc:
        return "unknown", f"{VERDICTS['unknown']}: {exc}"
    try:
        image_id = engine.ensure_image(
            client, resolved.image, service=spec.name, log=None, pull=False
        )
    except engine.EngineError:
        return "recreate", (
            f"image {spec.image} is not on the host: a start pulls it and "
            "recreates the container"
        )
    wanted = engine.config_hash(resolved, image_id=image_id)
    if wanted == state.config_hash:
        if state.state == "running":
            return "unchanged", VERDICTS["unchanged"]
        return "start", VERDICTS["start"]
    if entry["changed"]:
        return "recreate", (
            f"configuration changed ({', '.join(entry['changed'])}): a start "
            "recreates it"
        )
    if not entry["recorded"]:
        return "recreate", (
            "configuration changed: a start recreates it (the container was made "
            "before the portal recorded configurations, so what changed cannot "
            "be shown)"
        )
    if state.summary.get("ImageID") and state.summary["ImageID"] != image_id:
        return "recreate", (
            f"image {spec.image} was rebuilt or pulled since the container was "
            "made: a start recreates it on the new image"
        )
    return "recreate", (
        "a value behind a ${VAR} reference changed (a variable or secret; values "
        "are not shown): a start recreates it"
    )

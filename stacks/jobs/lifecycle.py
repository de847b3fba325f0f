"""Stack lifecycle runners: what the worker executes to start, stop, restart.

Each runner reads as the steps of its operation; the Docker work is in
:mod:`stacks.engine` and the desired state comes from
:func:`stacks.compose.stack_plan`. A start (and a restart) first checks
the credentials of the stacks it starts (:mod:`stacks.credentials`: refused
in a protected environment, warnings elsewhere); then, for each stack
(dependencies first when asked):

1. plan, resolve each service's environment (secrets only here, never
   logged), make sure the images are there (pull with progress);
2. preflight: GPUs, host ports, stacks it depends on running, subnet
   conflicts of the networks it creates (``stacks.networks.preflight``);
3. networks (planned subnets; the dependency stacks' networks joined),
   volumes;
4. services level by level in ``depends_on`` order: reconcile each
   (unchanged, started, created, recreated), then wait for the level to be
   healthy before the next one starts.

A stop goes the other way, dependents first. Cancel is checked between
services, progress is reported per service.
"""

import time
from functools import partial

from portal.operations import OperationFailed, OperationRunner, PlanError, register
from portal.publish import publish
from portal.redaction import redact

from .. import engine
from ..compose import resolve_spec, stack_plan, start_levels
from ..credentials import check_before_start
from ..groups import logs_group
from ..models import Service
from ..networks import preflight as network_preflight
from ..operations import blast_radius, dependent_stacks, get_config
from ..secrets import (
    InvalidEnvFile,
    InvalidReference,
    MissingSecret,
    environ_for,
    resolve_all,
    sources_hint,
)

__all__ = ["RestartStackJob", "StartStackJob", "StopStackJob"]


def flag(value):
    """Return a boolean parameter (``--param remove=true`` arrives as text)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _plan_or_fail(environment, stack):
    """Return the plan of ``stack``; a configuration error is a PlanError.

    At request time views and commands show the PlanError; inside a run it
    fails the operation (see :meth:`_StackRunner.run`).
    """
    try:
        return stack_plan(environment, stack)
    except (MissingSecret, InvalidReference, ValueError) as exc:
        raise PlanError(
            f"Configuration of stack {stack.name} in {environment.name}: {exc}"
        ) from exc


def _same_stack_closure(plan, name, *, upward):
    """Return ``name`` with its same-stack dependencies (or dependents)."""
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        if upward:
            todo.extend(plan.service(current).depends_on)
        else:
            todo.extend(s.name for s in plan.services if current in s.depends_on)
    return found


def _describe_plan(plan):
    return {
        "project": plan.project,
        "levels": [[s.name for s in level] for level in start_levels(plan.services)],
        "images": {s.name: s.image for s in plan.services},
        "ports": {s.name: [str(p) for p in s.ports] for s in plan.services if s.ports},
        "gpu": [s.name for s in plan.services if s.gpu],
        "networks": [
            {
                "name": n.docker_name,
                "subnet": n.subnet,
                "gateway": n.gateway,
                "joined": n.external,
            }
            for n in plan.networks
        ],
        "volumes": [
            {"name": v.docker_name, "data_type": v.data_type}
            for v in plan.volumes
            if not v.external
        ],
    }


class _StackRunner(OperationRunner):
    """What the stack runners share: the client, plans, error translation."""

    queue = "default"
    mutating = True
    job_timeout = 1800

    def run(self):
        operation = self.operation
        self.environment = operation.environment
        self.stack = operation.stack
        self.parameters = operation.parameters or {}
        self.started_at = time.monotonic()
        # {stack name: service names} this run starts or stops; their log
        # pages are told to look at the containers again when it ends.
        self.touched = {}
        try:
            self.client = engine.client_for(self.environment)
            with engine.engine_errors(engine.describe_host(self.environment)):
                return self.steps()
        except (engine.EngineError, PlanError) as exc:
            raise OperationFailed(str(exc)) from exc
        except MissingSecret as exc:
            hint = sources_hint(self.environment)
            raise OperationFailed(
                f"Cannot resolve the environment: {exc} ({hint})."
            ) from exc
        except (InvalidReference, InvalidEnvFile) as exc:
            raise OperationFailed(f"Cannot resolve the environment: {exc}") from exc
        finally:
            # Also after a failure or cancel: what was started stays up.
            self.announce_rescan()

    def steps(self):
        raise NotImplementedError

    def touch(self, plan, services):
        """Note that ``services`` of ``plan`` are about to change."""
        names = self.touched.setdefault(plan.stack.name, set())
        names.update(s.name for s in services)

    def announce_rescan(self):
        """Tell the log consumers of the touched stacks to list containers now.

        Without this a log page finds a started container only at its next
        periodic reading (``RELIST_INTERVAL``).
        """
        event = {"type": "logs.rescan"}
        env = self.environment.name
        for stack, services in self.touched.items():
            publish(logs_group(env, stack), event)
            for service in sorted(services):
                publish(logs_group(env, stack, service), event)

    # -- shared steps

    def health_timeout(self):
        return float(
            self.parameters.get("health_timeout") or get_config()["HEALTH_TIMEOUT"]
        )

    def selected(self, plan, *, upward):
        """Return the services of ``plan`` this operation acts on, in order."""
        service = self.operation.service
        if service is None or service.stack_id != plan.stack.pk:
            return list(plan.services)
        names = _same_stack_closure(plan, service.name, upward=upward)
        return [s for s in plan.services if s.name in names]

    def dependency_problems(self):
        """Return "stack (why)" for each dependency stack that is not ready."""
        problems = []
        for dep in self.stack.dependency_closure():
            states = engine.service_states(
                self.client, self.environment.project_name(dep)
            )
            wanted = Service.objects.filter(stack=dep).values_list("name", flat=True)
            why = []
            for name in wanted:
                state = states.get(name)
                if state is None:
                    why.append(f"{name} missing")
                elif not state.ready:
                    why.append(f"{name} {state.health or state.state}")
            if why:
                problems.append(f"{dep.name} ({', '.join(why)})")
        return problems

    def start_plan(self, plan, services, *, done, total):
        """Bring ``services`` of ``plan`` up; return {service: action}."""
        env, client, log = self.environment, self.client, self.log
        self.touch(plan, services)
        log.info(
            f"Stack {plan.stack.name} in {env.name}: project {plan.project}, "
            f"{len(services)} service(s)"
        )
        environ = environ_for(env)
        resolved, image_ids = {}, {}
        for spec in services:
            # The log shows the configured text (references as written,
            # values hidden) before resolving, so a reference that cannot be
            # resolved is visible next to the error.
            if spec.environment:
                shown = " ".join(
                    f"{k}={v}" for k, v in redact(spec.environment).items()
                )
                log.info(f"{spec.name}: environment {shown}")
            # Secrets exist only in this copy, which goes to the engine and
            # nowhere else.
            resolved[spec.name] = resolve_spec(
                spec, partial(resolve_all, environ=environ)
            )
        for spec in services:
            image = resolved[spec.name].image
            if not image:
                raise OperationFailed(
                    f"Service {spec.name} has no image in {env.name} (only a "
                    "build context); build and tag it, then set image in an override."
                )
            image_ids[spec.name] = engine.ensure_image(
                client, image, service=spec.name, log=log
            )
            self.check_cancel()
        engine.check_gpu(client, env, services)
        engine.check_ports(client, env, plan)
        network_preflight(client, env, plan, log=log, owner=self.operation.pk)

        network_ids = {}
        for net in plan.networks:
            network_ids[net.docker_name] = engine.ensure_network(client, net, log=log)
        for volume in plan.volumes:
            engine.ensure_volume(client, volume, log=log)

        actions = {}
        for level in start_levels(services):
            started = {}
            for spec in level:
                self.check_cancel()
                action, cid = engine.reconcile_service(
                    client,
                    resolved[spec.name],
                    image_id=image_ids[spec.name],
                    network_ids={
                        n: i for n, i in network_ids.items() if n in spec.networks
                    },
                    log=log,
                )
                actions[spec.name] = action
                started[spec.name] = cid
                done[0] += 1
                log.info(f"{spec.name}: {action} ({spec.container_name}, {cid[:12]})")
                self.progress(
                    100 * done[0] / max(total, 1), f"{plan.stack.name}/{spec.name}"
                )
            engine.wait_ready(
                client,
                started,
                timeout=self.health_timeout(),
                check_cancel=self.check_cancel,
                log=log,
            )
        return actions

    def stop_plan(self, plan, services, *, remove, done, total):
        """Stop ``services`` of ``plan`` in reverse order; return their names."""
        client, log = self.client, self.log
        self.touch(plan, services)
        states = engine.service_states(client, plan.project)
        stopped = []
        for level in reversed(start_levels(services)):
            for spec in reversed(level):
                self.check_cancel()
                state = states.get(spec.name)
                done[0] += 1
                if state is None:
                    log.info(f"{spec.name}: no container")
                elif remove:
                    engine.remove_container(
                        client, state.id, timeout=engine.stop_timeout(spec)
                    )
                    log.info(f"{spec.name}: stopped and removed ({state.name})")
                    stopped.append(spec.name)
                elif state.state in ("running", "restarting", "paused"):
                    engine.stop_container(
                        client, state.id, timeout=engine.stop_timeout(spec)
                    )
                    log.info(f"{spec.name}: stopped ({state.name})")
                    stopped.append(spec.name)
                else:
                    log.info(f"{spec.name}: already {state.state}")
                self.progress(
                    100 * done[0] / max(total, 1), f"{plan.stack.name}/{spec.name}"
                )
        if remove and len(services) == len(plan.services):
            for net in plan.own_networks:
                engine.remove_network(client, net, log=log)
        return stopped

    def log_blast_radius(self):
        states = {}
        try:
            with engine.engine_errors("blast radius"):
                for other in [self.stack, *dependent_stacks(self.stack)]:
                    project = self.environment.project_name(other)
                    states[project] = engine.service_states(self.client, project)
        except engine.EngineError:
            states = None
        radius = blast_radius(
            self.environment, self.stack, self.operation.service, states=states
        )
        running = [d for d in radius["dependents"] if d.get("running")]
        for dep in running:
            self.log.warning(
                f"{dep['stack']}/{dep['service']} is running and depends on "
                f"{', '.join(dep['depends_on'])}"
            )
        return radius


@register
class StartStackJob(_StackRunner):
    """Start a stack (or one service and what it needs), healthy, in order."""

    kind = "stack.start"
    verb = "start"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        parameters = parameters or {}
        plan = _plan_or_fail(environment, stack)
        result = _describe_plan(plan)
        result["dependency_stacks"] = list(plan.dependency_stacks)
        result["with_dependencies"] = flag(parameters.get("with_dependencies"))
        if service is not None:
            names = _same_stack_closure(plan, service.name, upward=True)
            result["services"] = [s.name for s in plan.services if s.name in names]
        return result

    def steps(self):
        stacks = self.stack.dependency_closure()
        with_dependencies = flag(self.parameters.get("with_dependencies"))
        # Before anything else: refused in a protected environment.
        check_before_start(
            self.environment,
            [*stacks, self.stack] if with_dependencies else [self.stack],
            log=self.log,
        )
        if with_dependencies:
            todo = [*stacks, self.stack]
        else:
            problems = self.dependency_problems()
            if problems:
                raise OperationFailed(
                    f"Stack {self.stack.name} depends on stacks that are not "
                    f"running in {self.environment.name}: {'; '.join(problems)}. "
                    "Start them first, or start with dependencies "
                    "(manage.py stack start --with-dependencies, or tick "
                    '"with dependencies" next to Start on the environment page).'
                )
            todo = [self.stack]
        plans = [(s, _plan_or_fail(self.environment, s)) for s in todo]
        selection = [
            (
                plan,
                self.selected(plan, upward=True) if s == self.stack else plan.services,
            )
            for s, plan in plans
        ]
        total, done = sum(len(services) for _, services in selection), [0]
        result = {"stacks": {}}
        for plan, services in selection:
            result["stacks"][plan.stack.name] = self.start_plan(
                plan, services, done=done, total=total
            )
        result["seconds"] = round(time.monotonic() - self.started_at, 2)
        self.log.info(f"Started in {result['seconds']}s")
        return result


@register
class StopStackJob(_StackRunner):
    """Stop a stack (or one service) in reverse dependency order."""

    kind = "stack.stop"
    verb = "stop"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        parameters = parameters or {}
        plan = _plan_or_fail(environment, stack)
        levels = [[s.name for s in level] for level in start_levels(plan.services)]
        return {
            "project": plan.project,
            "order": [name for level in reversed(levels) for name in reversed(level)],
            "remove": flag(parameters.get("remove")),
            "with_dependents": flag(parameters.get("with_dependents")),
            "blast_radius": blast_radius(environment, stack, service),
        }

    def steps(self):
        remove = flag(self.parameters.get("remove"))
        radius = self.log_blast_radius()
        todo = [self.stack]
        if (
            flag(self.parameters.get("with_dependents"))
            and self.operation.service is None
        ):
            todo = [*dependent_stacks(self.stack), self.stack]
        plans = [_plan_or_fail(self.environment, s) for s in todo]
        selection = [
            (
                plan,
                self.selected(plan, upward=False)
                if plan.stack == self.stack
                else plan.services,
            )
            for plan in plans
        ]
        total, done = sum(len(services) for _, services in selection), [0]
        result = {"stacks": {}, "blast_radius": radius}
        for plan, services in selection:
            result["stacks"][plan.stack.name] = self.stop_plan(
                plan, services, remove=remove, done=done, total=total
            )
        result["seconds"] = round(time.monotonic() - self.started_at, 2)
        return result


@register
class RestartStackJob(_StackRunner):
    """Stop a stack (or one service), then start it again, healthy, in order."""

    kind = "stack.restart"
    verb = "restart"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        result = StartStackJob.plan(
            environment=environment, stack=stack, service=service, parameters=parameters
        )
        result["blast_radius"] = blast_radius(environment, stack, service)
        return result

    def steps(self):
        # Before anything stops: a restart that could not start is refused.
        check_before_start(self.environment, [self.stack], log=self.log)
        radius = self.log_blast_radius()
        problems = self.dependency_problems()
        if problems:
            raise OperationFailed(
                f"Stack {self.stack.name} depends on stacks that are not running "
                f"in {self.environment.name}: {'; '.join(problems)}. Start them first."
            )
        plan = _plan_or_fail(self.environment, self.stack)
        down = self.selected(plan, upward=False)
        # Dependents stopped with a service come back up with it, and so do
        # whatever the service needs that was not running.
        names = {s.name for s in down} | {
            s.name for s in self.selected(plan, upward=True)
        }
        up = [s for s in plan.services if s.name in names]
        total, done = len(down) + len(up), [0]
        stopped = self.stop_plan(plan, down, remove=False, done=done, total=total)
        actions = self.start_plan(plan, up, done=done, total=total)
        return {
            "stopped": stopped,
            "stacks": {self.stack.name: actions},
            "blast_radius": radius,
            "seconds": round(time.monotonic() - self.started_at, 2),
        }

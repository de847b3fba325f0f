"""Wipes: a stack, a data type, or a whole environment, by the portal's labels.

Every wipe is an operation whose plan names exactly what it removes or
empties, found by the labels the portal puts on what it creates (never by
name patterns, so another environment's identically named objects are out
of reach):

==================  ==========================================================
kind                removes
==================  ==========================================================
``wipe.stack``      the stack's containers, volumes and networks
``wipe.data``       the files of the environment's volumes of one data type
                    (db, cache, models, logs, test-results, ...): the
                    containers using them are stopped, the volumes emptied
                    (they stay, with their labels), the containers started
                    again and waited for
``wipe.environment``  every container, volume and network of the environment
==================  ==========================================================

The plan lists containers, volumes (with their sizes, facts that are not
part of the plan's hash), networks and the services whose data goes. A
dry run (``dry_run``) shows it and changes nothing. A real run needs the
typed confirmation ``<environment>/<stack or data type>`` (``all`` for the
environment), an approval in a protected environment, and, there, a fresh
verified backup of every service in scope (the guards of
:mod:`stacks.guards`); it runs only while the plan still holds (the
runner's ``check_plan``): a container recreated, a volume added or gone
since, and it stops before touching anything.
"""

import time

from portal.operations import (
    INFO_KEY,
    OperationFailed,
    OperationRunner,
    PlanError,
    register,
)

from .. import engine
from ..choices import DataType
from ..guards import check_destroy
from ..models import Service, Stack
from .lifecycle import flag

__all__ = [
    "WipeDataJob",
    "WipeEnvironmentJob",
    "WipeStackJob",
    "wipe_plan",
]

ENVIRONMENT_CONFIRMATION = "all"


def _container(summary, action):
    labels = summary.get("Labels") or {}
    return {
        "id": summary["Id"][:12],
        "name": (summary.get("Names") or ["/?"])[0].lstrip("/"),
        "stack": labels.get(engine.labels.STACK, ""),
        "service": engine.labels.service_of(
            labels, labels.get(engine.labels.HELPER, "")
        ),
        "state": summary.get("State", ""),
        "action": action,
    }


def _volume(volume, action):
    labels = volume.get("Labels") or {}
    return {
        "name": volume["Name"],
        "key": labels.get(engine.labels.COMPOSE_VOLUME, ""),
        "stack": labels.get(engine.labels.STACK, ""),
        "data_type": labels.get(engine.labels.DATA_TYPE, ""),
        "action": action,
    }


def _network(network):
    return {"id": network["Id"][:12], "name": network["Name"], "action": "remove"}


def _foreign_attachments(client, networks, ours):
    """Return "network: container, ..." for networks used by others."""
    problems = []
    for network in networks:
        attached = client.api.inspect_network(network["Id"]).get("Containers") or {}
        others = sorted(
            c.get("Name", cid[:12])
            for cid, c in attached.items()
            if cid[:12] not in ours
        )
        if others:
            problems.append(f"{network['Name']} ({', '.join(others)})")
    return problems


def wipe_plan(environment, *, stack=None, data_type=None):
    """Return the plan of a wipe of ``stack``, of ``data_type``, or (neither)
    of the whole environment. Raises PlanError when it cannot be done."""
    client = engine.client_for(environment)
    env = environment.name
    with engine.engine_errors(engine.describe_host(environment)):
        if data_type:
            volumes = engine.list_volumes(client, environment=env, data_type=data_type)
            users = {}
            for volume in volumes:
                for summary in engine.containers_using_volume(client, volume["Name"]):
                    users[summary["Id"]] = summary
            containers = [
                _container(
                    summary,
                    "stop, start again"
                    if summary.get("State") == "running"
                    else "stays stopped",
                )
                for summary in sorted(
                    users.values(), key=lambda s: (s.get("Names") or [""])[0]
                )
            ]
            volume_rows = [_volume(v, "empty") for v in volumes]
            network_rows = []
            scope = {"kind": "data", "data_type": data_type}
            what = f"{data_type} data"
        else:
            where = {"environment": env}
            if stack is not None:
                where["stack"] = stack.name
            summaries = engine.list_containers(client, **where)
            volumes = engine.list_volumes(client, **where)
            networks = engine.list_networks(client, **where)
            ours = {s["Id"][:12] for s in summaries}
            foreign = _foreign_attachments(client, networks, ours)
            if foreign:
                raise PlanError(
                    "Networks of "
                    + (f"stack {stack.name}" if stack else f"environment {env}")
                    + " are used by containers outside the wipe: "
                    + "; ".join(foreign)
                    + ". Stop those first."
                )
            containers = [
                _container(s, "remove")
                for s in sorted(summaries, key=lambda s: (s.get("Names") or [""])[0])
            ]
            volume_rows = [_volume(v, "remove") for v in volumes]
            network_rows = [_network(n) for n in networks]
            scope = (
                {"kind": "stack", "stack": stack.name}
                if stack is not None
                else {"kind": "environment"}
            )
            what = f"stack {stack.name}" if stack is not None else "everything"
        sizes = engine.volume_sizes(client) if volume_rows else {}
    services = sorted(
        {c["service"] for c in containers if c["stack"] and c["service"]}
        | _volume_services(volume_rows)
    )
    known = [sizes.get(v["name"]) for v in volume_rows]
    total = sum(size for size in known if size is not None)
    return {
        "summary": (
            f"wipe {what} in {env}: {len(containers)} container(s), "
            f"{len(volume_rows)} volume(s), {len(network_rows)} network(s)"
        ),
        "scope": scope,
        "containers": containers,
        "volumes": volume_rows,
        "networks": network_rows,
        "services": services,
        INFO_KEY: {
            "volume_bytes": {v["name"]: sizes.get(v["name"]) for v in volume_rows},
            "total_bytes": total,
            "sizes_unknown": sum(1 for size in known if size is None),
        },
    }


def _volume_services(volume_rows):
    """Return the services whose configuration mounts the planned volumes."""
    keys = {(row["stack"], row["key"]) for row in volume_rows if row["key"]}
    names = set()
    stacks = {stack for stack, _key in keys}
    for service in Service.objects.filter(stack__name__in=stacks).select_related(
        "stack"
    ):
        for entry in service.volumes or []:
            source = str(entry).split(":", 1)[0]
            if (service.stack.name, source) in keys:
                names.add(service.name)
    return names


class _WipeRunner(OperationRunner):
    """What the wipes share: plan, confirmation, guards, the dry run."""

    verb = "wipe"
    queue = "long"
    mutating = True
    destructive = True
    job_timeout = 3 * 3600

    @classmethod
    def confirmation(cls, *, environment, stack=None, service=None, parameters=None):
        if flag((parameters or {}).get("dry_run")):
            return None
        return f"{environment.name}/{cls.confirmation_target(stack, parameters or {})}"

    @classmethod
    def confirmation_target(cls, stack, parameters):
        raise NotImplementedError

    def run(self):
        operation = self.operation
        environment = operation.environment
        plan = operation.plan or {}
        self.client = engine.client_for(environment)
        self.log.info(plan.get("summary", "wipe"))
        self.log_plan(plan)
        if flag((operation.parameters or {}).get("dry_run")):
            self.log.info("Dry run: nothing was changed.")
            return {"dry_run": True, "plan": plan}
        evidence = []
        if environment.protected:
            services = Service.objects.filter(name__in=plan.get("services") or [])
            answer = check_destroy(environment, services)
            if answer.problems:
                raise OperationFailed(
                    f"{environment.name} is protected: a wipe needs a fresh verified "
                    "backup of what it destroys first. " + " ".join(answer.problems)
                )
            evidence = answer.evidence
            for item in evidence:
                self.log.info(f"Backup that can undo it: {item.get('text', item)}")
        started = time.monotonic()
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                done = self.destroy(plan)
        except engine.EngineError as exc:
            raise OperationFailed(str(exc)) from exc
        info = plan.get(INFO_KEY) or {}
        return {
            **done,
            "bytes_freed": info.get("total_bytes"),
            "seconds": round(time.monotonic() - started, 2),
            "backups": evidence,
        }

    def log_plan(self, plan):
        sizes = (plan.get(INFO_KEY) or {}).get("volume_bytes") or {}
        for row in plan.get("containers") or []:
            self.log.info(f"container {row['name']} ({row['state']}): {row['action']}")
        for row in plan.get("volumes") or []:
            size = sizes.get(row["name"])
            shown = f"{size} bytes" if size is not None else "size unknown"
            self.log.info(
                f"volume {row['name']} ({row['data_type']}, {shown}): {row['action']}"
            )
        for row in plan.get("networks") or []:
            self.log.info(f"network {row['name']}: {row['action']}")

    def remove_all(self, plan):
        client, log = self.client, self.log
        rows = plan.get("containers") or []
        for index, row in enumerate(rows):
            self.check_cancel()
            engine.remove_container(client, row["id"])
            log.info(f"container {row['name']}: removed")
            self.progress(60 * (index + 1) / max(len(rows), 1), row["name"])
        for row in plan.get("volumes") or []:
            engine.remove_volume(client, row["name"])
            log.info(f"volume {row['name']}: removed")
        for row in plan.get("networks") or []:
            engine.delete_network(client, row["id"], row["name"])
            log.info(f"network {row['name']}: removed")
        return {
            "removed": {
                "containers": [r["name"] for r in rows],
                "volumes": [r["name"] for r in plan.get("volumes") or []],
                "networks": [r["name"] for r in plan.get("networks") or []],
            }
        }


@register
class WipeStackJob(_WipeRunner):
    """Remove a stack's containers, volumes and networks."""

    kind = "wipe.stack"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        if stack is None:
            raise PlanError("A stack wipe names the stack.")
        if service is not None:
            raise PlanError("A stack wipe covers the whole stack, not one service.")
        return wipe_plan(environment, stack=stack)

    @classmethod
    def confirmation_target(cls, stack, parameters):
        return stack.name

    def destroy(self, plan):
        return self.remove_all(plan)


@register
class WipeEnvironmentJob(_WipeRunner):
    """Remove every container, volume and network of an environment."""

    kind = "wipe.environment"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        if stack is not None:
            raise PlanError("An environment wipe covers every stack; name none.")
        return wipe_plan(environment)

    @classmethod
    def confirmation_target(cls, stack, parameters):
        return ENVIRONMENT_CONFIRMATION

    def destroy(self, plan):
        return self.remove_all(plan)


@register
class WipeDataJob(_WipeRunner):
    """Empty the environment's volumes of one data type."""

    kind = "wipe.data"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        data_type = (parameters or {}).get("data_type")
        if data_type not in DataType.values:
            raise PlanError(
                f"Unknown data type {data_type!r} (one of: "
                f"{', '.join(DataType.values)})."
            )
        if stack is not None:
            raise PlanError("A data wipe covers the environment; name no stack.")
        return wipe_plan(environment, data_type=data_type)

    @classmethod
    def confirmation_target(cls, stack, parameters):
        return str(parameters.get("data_type"))

    def destroy(self, plan):
        client, log = self.client, self.log
        environment = self.operation.environment
        containers = plan.get("containers") or []
        running = [c for c in containers if c["action"] == "stop, start again"]
        for row in running:
            self.check_cancel()
            engine.stop_container(client, row["id"])
            log.info(f"container {row['name']}: stopped")
        volumes = plan.get("volumes") or []
        for index, row in enumerate(volumes):
            engine.empty_volume(
                client,
                row["name"],
                environment=environment,
                owner=str(self.operation.pk),
            )
            log.info(f"volume {row['name']}: emptied")
            self.progress(70 * (index + 1) / max(len(volumes), 1), row["name"])
        targets = {}
        for row in running:
            engine.start_container(client, row["id"], row["name"])
            log.info(f"container {row['name']}: started again")
            targets[row["service"] or row["name"]] = row["id"]
        if targets:
            engine.wait_ready(
                client,
                targets,
                timeout=float(
                    (self.operation.parameters or {}).get("health_timeout") or 180
                ),
                check_cancel=self.check_cancel,
                log=log,
            )
            log.info(f"ready again: {', '.join(sorted(targets))}")
        return {
            "emptied": [r["name"] for r in volumes],
            "restarted": [r["name"] for r in running],
        }


def stack_by_name(name):
    """Return the Stack named ``name`` or raise PlanError."""
    try:
        return Stack.objects.get(name=name)
    except Stack.DoesNotExist:
        raise PlanError(f"No stack {name!r}.") from None

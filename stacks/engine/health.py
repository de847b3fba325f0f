"""Waiting for containers to be ready (healthy, or running and settled)."""

import time

from .containers import container_tail, last_health_output
from .errors import EngineError

__all__ = ["wait_ready"]


def wait_ready(
    client, targets, *, timeout, check_cancel=None, poll=0.3, log=None, settle=1.0
):
    """Wait until every container in ``targets`` ({service: id}) is ready.

    Ready is healthy for a container with a healthcheck (its own or the
    image's), and running for ``settle`` seconds for one without, so that a
    process that dies right after its start is caught. Fails at once when one
    turns unhealthy, exits or restarts, and after ``timeout`` seconds
    otherwise, naming the service and its last health check output.
    """
    deadline = time.monotonic() + timeout
    pending = dict(targets)
    waited = {}
    running_since = {}
    started = time.monotonic()
    while pending:
        for service, cid in list(pending.items()):
            attrs = client.api.inspect_container(cid)
            state = attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            if state["Status"] in ("exited", "dead") or attrs.get("RestartCount"):
                restarts = attrs.get("RestartCount")
                raise EngineError(
                    f"Service {service} stopped during start (exit code "
                    f"{state.get('ExitCode')}"
                    f"{f', restarted {restarts}x' if restarts else ''}"
                    f"); last log lines: {container_tail(client, cid) or '(none)'}"
                )
            if health == "unhealthy":
                raise EngineError(
                    f"Service {service} is unhealthy; last health check: "
                    f"{last_health_output(state)}"
                )
            if state["Status"] == "running" and health is None:
                since = running_since.setdefault(service, time.monotonic())
                if time.monotonic() - since < settle:
                    continue
            if state["Status"] == "running" and health in (None, "healthy"):
                waited[service] = time.monotonic() - started
                if log is not None:
                    log.info(
                        f"{service}: {'healthy' if health else 'running'} "
                        f"after {waited[service]:.1f}s"
                    )
                del pending[service]
        if not pending:
            break
        if time.monotonic() > deadline:
            service, cid = next(iter(pending.items()))
            state = client.api.inspect_container(cid)["State"]
            raise EngineError(
                f"Service {service} is not healthy after {timeout:.0f}s "
                f"(health: {(state.get('Health') or {}).get('Status', 'none')}); "
                f"last health check: {last_health_output(state)}"
            )
        if check_cancel is not None:
            check_cancel()
        time.sleep(poll)
    return waited

"""The ``host.check`` operation: what an environment's Docker host offers.

Reports the engine and API versions, storage driver, free disk of the Docker
root dir, whether a GPU runtime is present, and container and image counts.
Nothing is changed on the host, so the operation takes no stack lock.

Free disk comes from ``statvfs`` of ``DockerRootDir`` when the engine is
local and the directory is visible here; otherwise from ``df`` in a short
helper container that mounts the root dir read-only (image from the
environment's ``settings["helper_image"]``, default
``stackportal/busybox:local``), labelled as a ``host.check`` helper.
``settings["disk_probe"]`` forces ``statvfs`` or ``container``.
"""

import os
import re

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, register

from .. import engine

__all__ = ["CheckHostJob"]

DEFAULT_MIN_FREE_GB = 10
GIB = 1024**3


@register
class CheckHostJob(OperationRunner):
    """Check an environment's Docker host: engine, disk, GPU runtime, counts.

    Parameters: ``strict`` ("true") fails the operation when a check warns.
    """

    kind = "host.check"
    verb = Verb.CHECK
    mutating = False
    job_timeout = 300

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        settings = environment.settings or {}
        return {
            "docker_host": environment.docker_host,
            "disk_probe": settings.get("disk_probe", "auto"),
            "min_free_gb": settings.get("min_free_disk_gb", DEFAULT_MIN_FREE_GB),
            "changes": "none (read-only check)",
        }

    def run(self):
        environment = self.operation.environment
        settings = environment.settings or {}
        self.log.info("Connecting to %s", environment.docker_host)
        try:
            client = engine.client_for(environment)
            version, info = engine.engine_facts(client, environment)
        except engine.EngineError as exc:
            raise OperationFailed(str(exc)) from exc
        api_version = version.get("ApiVersion", "")
        self.log.info(
            "Engine %s, API %s (min %s), %s",
            version.get("Version"),
            api_version,
            version.get("MinAPIVersion"),
            info.get("OperatingSystem"),
        )
        self.progress(30, "engine")
        self.check_cancel()

        root = info.get("DockerRootDir", "/var/lib/docker")
        disk = self.free_disk(client, environment, root)
        self.progress(70, "disk")
        self.check_cancel()

        runtimes = sorted((info.get("Runtimes") or {}).keys())
        gpu = {
            "runtime": "nvidia" in runtimes,
            "runtimes": runtimes,
            "default_runtime": info.get("DefaultRuntime", ""),
            # DeviceRequests (--gpus) arrived with API 1.40.
            "device_requests_api": _api_at_least(api_version, (1, 40)),
            "cdi_spec_dirs": info.get("CDISpecDirs") or [],
        }
        self.log.info(
            "GPU runtime: %s (runtimes: %s)",
            "present" if gpu["runtime"] else "absent",
            ", ".join(runtimes) or "none",
        )
        containers = {
            "total": info.get("Containers", 0),
            "running": info.get("ContainersRunning", 0),
            "paused": info.get("ContainersPaused", 0),
            "stopped": info.get("ContainersStopped", 0),
        }
        self.log.info(
            "Containers: %(total)s (%(running)s running, %(paused)s paused, "
            "%(stopped)s stopped); images: %(images)s",
            {**containers, "images": info.get("Images", 0)},
        )

        warnings = list(info.get("Warnings") or [])
        min_free = float(settings.get("min_free_disk_gb", DEFAULT_MIN_FREE_GB))
        if disk.get("free_bytes") is not None and disk["free_bytes"] < min_free * GIB:
            warnings.append(
                f"Only {disk['free_bytes'] / GIB:.1f} GiB free in {root} "
                f"(want {min_free:g} GiB)."
            )
        if disk.get("free_bytes") is None:
            warnings.append(f"Free disk of {root} is unknown: {disk.get('error')}")
        if environment.gpu_enabled and not gpu["runtime"]:
            warnings.append(
                "The environment wants GPUs but the host has no nvidia runtime; "
                "GPU services will not start here."
            )
        for warning in warnings:
            self.log.warning(warning)
        result = {
            "docker_host": environment.docker_host,
            "engine_version": version.get("Version", ""),
            "api_version": api_version,
            "min_api_version": version.get("MinAPIVersion", ""),
            "os": info.get("OperatingSystem", ""),
            "kernel": info.get("KernelVersion", ""),
            "architecture": info.get("Architecture", ""),
            "ncpu": info.get("NCPU"),
            "mem_total_bytes": info.get("MemTotal"),
            "storage_driver": info.get("Driver", ""),
            "docker_root_dir": root,
            "disk": disk,
            "gpu": gpu,
            "containers": containers,
            "images": info.get("Images", 0),
            "warnings": warnings,
        }
        if warnings and str(self.operation.parameters.get("strict", "")).lower() in (
            "1",
            "true",
            "yes",
        ):
            raise OperationFailed(f"{len(warnings)} warning(s): {warnings[0]}")
        return result

    def free_disk(self, client, environment, root):
        """Return total and free bytes of the filesystem holding ``root``."""
        probe = (environment.settings or {}).get("disk_probe", "auto")
        if probe == "statvfs" or (
            probe == "auto"
            and engine.is_local_host(environment)
            and os.path.isdir(root)
        ):
            stat = os.statvfs(root)
            total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
            method = "statvfs"
        else:
            try:
                total, free = self.df_in_container(client, environment, root)
            except (engine.EngineError, ValueError) as exc:
                self.log.warning("Could not measure free disk: %s", exc)
                return {"method": "container", "free_bytes": None, "error": str(exc)}
            method = "container"
        self.log.info(
            "Disk of %s: %.1f GiB free of %.1f GiB (%s)",
            root,
            free / GIB,
            total / GIB,
            method,
        )
        return {
            "method": method,
            "total_bytes": total,
            "free_bytes": free,
            "free_percent": round(100 * free / total, 1) if total else None,
        }

    def df_in_container(self, client, environment, root):
        """Return (total, free) bytes from ``df`` in a throw-away container."""
        self.log.info("Running df in a %s container", engine.helper_image(environment))
        with engine.engine_errors("df helper"):
            code, output = engine.run_helper(
                client,
                ["df", "-Pk", "/probe"],
                environment=environment,
                purpose="host.check",
                owner=self.operation.pk,
                binds={root: {"bind": "/probe", "mode": "ro"}},
            )
        text = output.decode("utf-8", "replace")
        if code != 0:
            raise ValueError(f"df exited with {code}: {text.strip()[:200]}")
        return parse_df(text)


def parse_df(text):
    """Return (total, free) bytes from ``df -Pk`` output."""
    for line in text.strip().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[1].isdigit() and fields[3].isdigit():
            return int(fields[1]) * 1024, int(fields[3]) * 1024
    raise ValueError(f"Unexpected df output: {text.strip()[:200]!r}")


def _api_at_least(version, minimum):
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return len(numbers) == 2 and numbers >= minimum

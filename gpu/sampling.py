"""One reading of a Docker host's GPUs, made into a sample per environment.

Environments that share a Docker host (and GPU settings) share one
:class:`HostSampler`: the host is read once per tick and each environment
gets its own :class:`~gpu.readings.Sample`. Processes are attributed to
containers (:mod:`gpu.attribution`); in an environment's sample the
processes of another portal environment keep their memory and that
environment's name, but not their container, stack, service or command,
which its viewers may not be allowed to see.
"""

import time

from stacks import engine

from .attribution import attribute
from .config import get_config
from .readings import Sample
from .sources import GpuUnavailable, source_setting, sources_for

__all__ = ["HostSampler", "host_key", "sample_once"]


def host_key(environment):
    """Return what decides whether two environments share a sampler."""
    settings = environment.settings or {}
    return (
        environment.docker_host,
        settings.get("gpu_source", "auto"),
        settings.get("gpu_image", ""),
        settings.get("gpu_query", ""),
    )


class HostSampler:
    """Read one Docker host's GPUs through the first source that answers."""

    def __init__(self, environment, *, sources=None):
        self.environment = environment
        self.setting, self.problem = "off", None
        try:
            self.setting = source_setting(environment)
            if sources is None:
                sources = sources_for(
                    environment, nvidia_smi=get_config()["NVIDIA_SMI"]
                )
        except ValueError as exc:
            self.problem = str(exc)
        self.sources = sources or []
        self.available = None
        # Why each source found no GPU at the last reading.
        self.reasons = []

    def read(self):
        """Return ``(HostReading, None)``, or ``(None, plain reason)``."""
        if self.problem:
            return None, self.problem
        if not self.sources:
            return None, (
                f"GPU status is off for environment {self.environment.name} "
                "(settings.gpu_source: off)."
            )
        reasons = self.reasons = []
        for source in list(self.sources):
            try:
                reading = source.read()
            except GpuUnavailable as exc:
                reasons.append(str(exc))
                continue
            # The source that answered is tried first next time.
            self.sources.remove(source)
            self.sources.insert(0, source)
            self.available = True
            return reading, None
        self.available = False
        where = engine.describe_host(self.environment)
        return None, f"No NVIDIA GPU found on the {where}: " + "; ".join(reasons) + "."

    def sample(self, environments):
        """Read the host once; return one :class:`Sample` per environment."""
        taken = time.time()
        reading, reason = self.read()
        if reading is None:
            return [
                Sample(
                    environment=env.name,
                    host=env.docker_host,
                    source=self.setting,
                    taken=taken,
                    error=reason,
                )
                for env in environments
            ]
        try:
            containers = engine.running_containers(
                engine.client_for(self.environment), self.environment
            )
        except engine.EngineError:
            containers = {}  # processes stay unattributed; the figures stand
        attribute(reading.processes, reading.cgroups, containers)
        return [
            Sample(
                environment=env.name,
                host=env.docker_host,
                source=reading.source,
                taken=taken,
                gpus=list(reading.gpus),
                processes=[_as_seen_from(p, env.name) for p in reading.processes],
            )
            for env in environments
        ]

    def close(self):
        for source in self.sources:
            source.close()


def _as_seen_from(process, environment):
    """Return ``process`` as a viewer of ``environment`` may see it."""
    if process.environment in (None, environment):
        return process
    return type(process)(
        pid=None,
        gpu_uuid=process.gpu_uuid,
        used_memory_bytes=process.used_memory_bytes,
        environment=process.environment,
    )


def sample_once(environments):
    """Sample every host of ``environments`` once; return the samples."""
    groups = {}
    for env in environments:
        groups.setdefault(host_key(env), []).append(env)
    samples = []
    for envs in groups.values():
        sampler = HostSampler(envs[0])
        try:
            samples.extend(sampler.sample(envs))
        finally:
            sampler.close()
    return samples

"""Print one GPU sample from each source, to see what this machine offers.

    manage.py probe_gpus [--env E | --docker-host URL] [--image IMAGE] [--json]

Reads the GPUs through NVML and through ``nvidia-smi`` on this machine, and
through ``nvidia-smi`` in a GPU helper container on a Docker host (the
environment's, or ``--docker-host``, default the local engine), and prints
each reading (with ``--json`` also the sample as stored), or, plainly, why
a source found no GPU. Needs no database unless ``--env`` is given; changes
nothing (the helper container is removed). Exits 1 when no source found a
GPU. ``scripts/gpu_probe`` runs it.
"""

import json

from django.core.management.base import CommandError

from portal.management.base import PortalCommand
from portal.management.database import database_problem
from stacks import engine
from stacks.models import Environment

from ...config import get_config
from ...parsing import parse_gpu_list
from ...sampling import HostSampler
from ...sources import DockerSmiSource, LocalSmiSource, NvmlSource
from ...summary import holders, sample_payload
from ...units import format_bytes


def _figure(value, unit="", digits=None):
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}" if digits is not None else str(value)
    return f"{text} {unit}".strip()


def describe_gpu(gpu):
    """Return one line of a GPU's figures."""
    return (
        f"GPU {gpu.index} {gpu.name} {gpu.uuid}: utilisation "
        f"{_figure(gpu.utilization_gpu, '%')}, memory "
        f"{format_bytes(gpu.memory_used_bytes)} of "
        f"{format_bytes(gpu.memory_total_bytes)}, "
        f"{_figure(gpu.temperature_c, '°C')}, power "
        f"{_figure(gpu.power_draw_w, 'W', 1)} of {_figure(gpu.power_limit_w, 'W', 1)}, "
        f"SM {_figure(gpu.clock_sm_mhz, 'MHz')}, memory clock "
        f"{_figure(gpu.clock_mem_mhz, 'MHz')}, {gpu.pstate or 'P?'}, "
        f"uncorrected ECC {_figure(gpu.ecc_uncorrected)}, "
        f"XID {_figure(gpu.xid_errors)}, driver {gpu.driver_version or 'n/a'}"
    )


class Command(PortalCommand):
    help = "Print one GPU sample from NVML, nvidia-smi and a GPU container."
    requires_database = False

    def add_arguments(self, parser):
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--env", help="Use this environment's Docker host.")
        where.add_argument(
            "--docker-host",
            default="unix:///var/run/docker.sock",
            help="Docker host of the GPU container (default: the local engine).",
        )
        parser.add_argument(
            "--image",
            help="Image of the GPU container (default: the environment's "
            f"settings.gpu_image, else {engine.DEFAULT_GPU_IMAGE}).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Also print each sample as JSON."
        )

    def handle(self, *args, **options):
        environment = self.environment(options)
        nvidia_smi = get_config()["NVIDIA_SMI"]
        sources = [
            ("NVML (this machine)", NvmlSource()),
            (f"nvidia-smi (this machine, {nvidia_smi})", LocalSmiSource(nvidia_smi)),
            (
                f"nvidia-smi in a GPU container on {environment.docker_host}",
                DockerSmiSource(
                    environment, image=options["image"], owner="probe_gpus"
                ),
            ),
        ]
        found = 0
        for title, source in sources:
            self.stdout.write(f"== {title}")
            sampler = HostSampler(environment, sources=[source])
            try:
                sample = sampler.sample([environment])[0]
            finally:
                sampler.close()
            if sample.error:
                self.stdout.write(f"no GPU: {'; '.join(sampler.reasons)}")
                continue
            found += 1
            if isinstance(source, LocalSmiSource):
                for index, name, uuid in parse_gpu_list(source.list_gpus()):
                    self.stdout.write(
                        f"nvidia-smi -L: GPU {index}: {name} (UUID: {uuid})"
                    )
            for gpu in sample.gpus:
                self.stdout.write(describe_gpu(gpu))
            for row in holders(sample):
                self.stdout.write(
                    f"  {row['text']:>10} held by {row['label']} "
                    f"(GPU {', '.join(map(str, row['gpus']))})"
                )
            if not sample.processes:
                self.stdout.write("  no compute process on the GPUs")
            if options["json"]:
                self.stdout.write(json.dumps(sample_payload(sample), indent=1))
        if not found:
            raise CommandError(
                "No NVIDIA GPU here: neither NVML nor nvidia-smi on this machine, "
                f"nor a GPU container on {environment.docker_host} found one."
            )
        self.stdout.write(f"{found} of {len(sources)} sources found GPUs.")

    def environment(self, options):
        if not options["env"]:
            return Environment(
                name="probe",
                docker_host=options["docker_host"],
                settings={"gpu_image": options["image"]} if options["image"] else {},
            )
        problem = database_problem()
        if problem:
            raise CommandError(problem)
        try:
            return Environment.lookup(options["env"])
        except Environment.DoesNotExist:
            raise CommandError(f"No environment {options['env']!r}.")

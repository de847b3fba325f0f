"""The GPU page of an environment, and its samples as JSON."""

import redis
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal.permissions import require
from stacks.models import Environment

from .config import get_config
from .history import history
from .readings import Sample
from .summary import sample_payload, summary_line


@login_required
@require_GET
def environment_gpus(request, name):
    """Show the GPUs of an environment's Docker host, live."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    try:
        samples = history(environment.name)
        problem = None
    except redis.RedisError as exc:
        samples, problem = [], f"Redis could not be read: {exc}"
    latest = Sample.from_dict(samples[-1]) if samples else None
    return render(
        request,
        "gpu/environment_gpus.html",
        {
            "environment": environment,
            "samples": samples,
            "latest": sample_payload(latest) if latest else None,
            "summary": problem or summary_line(latest),
            "interval": get_config()["INTERVAL"],
        },
    )


@login_required
@require_GET
@never_cache
def environment_gpus_json(request, name):
    """Return the stored samples of the environment, oldest first."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    return JsonResponse({"environment": environment.name, "samples": history(name)})

"""Pages of environments and stacks."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from portal.permissions import require, visible_environments

from .models import Environment


@login_required
def environment_list(request):
    """List the environments."""
    return render(
        request,
        "stacks/environment_list.html",
        {"environments": visible_environments(request.user)},
    )


@login_required
def environment_detail(request, name):
    """Show one environment's stacks and services."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    return render(request, "stacks/environment_detail.html", {"environment": environment})

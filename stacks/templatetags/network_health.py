"""The health section of the environment page: ``{% network_health env %}``.

A tag rather than a context variable so the environment page's view stays
as it is: the template asks for the section where it wants it.
"""

from django import template
from django.db.models import Max, Subquery

from ..models import HealthProbe

register = template.Library()


def latest_probes(environment):
    """Return the newest probe of each service of ``environment`` (one query).

    Rows of one run are saved in one batch, so the highest id of a service
    is its newest probe.
    """
    newest = (
        HealthProbe.objects.filter(environment=environment)
        .values("service")
        .annotate(last=Max("pk"))
        .values("last")
    )
    return list(
        HealthProbe.objects.filter(pk__in=Subquery(newest)).order_by("stack", "service")
    )


@register.inclusion_tag("stacks/network_health_section.html")
def network_health(environment):
    """Render the newest health probe per service, with its timing."""
    return {"environment": environment, "rows": latest_probes(environment)}

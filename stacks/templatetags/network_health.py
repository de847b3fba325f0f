"""The health section of the environment page: ``{% network_health env %}``.

A tag rather than a context variable so the environment page's view stays
as it is: the template asks for the section where it wants it.
"""

from django import template
from django.db.models import Max

from ..models import HealthProbe

register = template.Library()


def latest_probes(environment):
    """Return the newest probe of each service of ``environment``."""
    newest = (
        HealthProbe.objects.filter(environment=environment)
        .values("service")
        .annotate(last=Max("checked"))
    )
    if not newest:
        return []
    last = {row["service"]: row["last"] for row in newest}
    rows = HealthProbe.objects.filter(
        environment=environment, checked__in=set(last.values())
    ).order_by("stack", "service", "-pk")
    seen, found = set(), []
    for row in rows:
        if row.checked == last.get(row.service) and row.service not in seen:
            seen.add(row.service)
            found.append(row)
    return found


@register.inclusion_tag("stacks/network_health_section.html")
def network_health(environment):
    """Render the newest health probe per service, with its timing."""
    return {"environment": environment, "rows": latest_probes(environment)}

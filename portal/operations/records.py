"""What is recorded about operations: audit entries, plan summaries, JSON."""

import hashlib
import json

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder

from .. import audit
from ..models import Operation
from ..redaction import redact

__all__ = ["PLAN_AUDIT_CHARS", "jsonable"]


_OPERATION_TYPE = "portal.operation"

# A plan whose JSON is longer is summarized in its audit entry (its hash
# and top-level keys); the operation row keeps it whole.
PLAN_AUDIT_CHARS = 2000


def _first_line(text, limit=500):
    """Return the line that says what went wrong (a traceback's last)."""
    lines = str(text).strip().splitlines()
    if not lines:
        return ""
    return (lines[-1] if lines[0].startswith("Traceback") else lines[0])[:limit]


def _plan_summary(plan):
    """Return the plan as its audit entry keeps it: hash, and itself if small."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    summary = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
    if len(text) <= PLAN_AUDIT_CHARS:
        summary["content"] = redact(plan)
    else:
        summary["keys"] = sorted(plan)[:50] if isinstance(plan, dict) else []
        summary["chars"] = len(text)
    return summary


def _audit(action, operation, *, actor=None, **data):
    """Append ``action`` about ``operation`` (call inside the mutex).

    ``actor`` None means the requester (the operation runs on their
    behalf); :data:`portal.audit.SYSTEM` means no user (the reaper). One
    SELECT names the operation whatever the caller has loaded.
    """
    row = (
        Operation.objects.filter(pk=operation.pk)
        .values_list(
            "kind",
            "requested_by_id",
            "requested_by__username",
            "environment__name",
            "stack__name",
            "service__name",
        )
        .get()
    )
    kind, requester_id, requester_name, env_name, stack_name, service_name = row
    if actor is None and requester_id is not None:
        # A reference to the requester without loading the row.
        user_model = get_user_model()
        actor = user_model(
            pk=requester_id, **{user_model.USERNAME_FIELD: requester_name}
        )
    elif isinstance(actor, str):  # audit.SYSTEM
        actor = None
    target = "/".join(
        [env_name, stack_name or "*", *([service_name] if service_name else [])]
    )
    audit.record(
        action,
        actor=actor,
        environment=env_name,
        object_type=_OPERATION_TYPE,
        object_id=operation.pk,
        object_repr=f"{kind} {target}",
        data={"kind": kind, **data},
    )


def jsonable(value):
    """Return ``value`` as it reads back from a JSONField."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))

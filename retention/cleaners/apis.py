"""Qdrant collections and Elasticsearch indices, through their HTTP APIs from a
helper on the service's network."""

import fnmatch
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import quote

from stacks import engine
from stacks.secrets import MissingSecret, environ_for, resolve

from ..models import CollectionSighting, RetentionPolicy
from .base import (
    CleanupError,
)


@contextmanager
def _api(ctx, item, default_port):
    """Yield ``request(method, path, body=None)`` for ``item``'s service API,
    sent from a helper container on the service's network."""
    container = ctx.container(item.service)
    attrs = ctx.client.api.inspect_container(container)
    networks = sorted((attrs["NetworkSettings"].get("Networks") or {}).keys())
    if not networks:
        raise CleanupError(f"The container of {item.service} is on no network.")
    policy = RetentionPolicy.objects.filter(service=item.service).first()
    options = (policy.settings or {}) if policy else {}
    port = str(options.get("port") or default_port)
    api_key = None
    if options.get("api_key"):
        try:
            api_key = resolve(str(options["api_key"]), environ_for(ctx.environment))
        except MissingSecret as exc:
            raise CleanupError(f"The API key of {item.service}: {exc}")
    with engine.helper_container(
        ctx.client,
        environment=ctx.environment,
        purpose="retention.api",
        owner=ctx.owner,
        command=["sleep", "3600"],
        network_mode=networks[0],
        init=True,
    ) as helper:
        ctx.client.api.start(helper)

        def request(method, path, body=None):
            try:
                answer = engine.api_request(
                    ctx.client, helper, item.service, port, method, path, body,
                    api_key=api_key,
                )  # fmt: skip
            except engine.NoApiAnswer as exc:
                raise CleanupError(
                    f"{item.service} did not answer {method} {path}: {exc.detail}"
                )
            if answer.status >= 300:
                raise CleanupError(
                    f"{item.service} answered {method} {path} with "
                    f"{answer.status}: {answer.text()}"
                )
            return answer.document

        yield request


def _matches(name, item):
    return fnmatch.fnmatchcase(name, item.pattern)


# -- collections (Qdrant) -----------------------------------------------------


def _collections(ctx, item, cutoff, request):
    """Return [(name, first seen, points)] of the item's collections; record
    when each was first seen (Qdrant reports no creation time)."""
    listed = (request("GET", "/collections").get("result") or {}).get(
        "collections"
    ) or []
    names = sorted(c["name"] for c in listed if _matches(c["name"], item))
    now = datetime.now(UTC)
    found = []
    for name in names:
        sighting, created = CollectionSighting.objects.get_or_create(
            environment=ctx.environment,
            service_name=item.service,
            name=name,
            defaults={"first_seen": now, "last_seen": now},
        )
        if not created:
            CollectionSighting.objects.filter(pk=sighting.pk).update(last_seen=now)
        info = request("GET", f"/collections/{quote(name, safe='')}").get("result")
        points = int((info or {}).get("points_count") or 0)
        found.append((name, sighting.first_seen, points))
    return found


def measure_collections(ctx, item, cutoff):
    with _api(ctx, item, 6333) as request:
        found = _collections(ctx, item, cutoff, request)
    old = [f for f in found if f[1] < cutoff]
    young = [f for f in found if f[1] >= cutoff]
    return {
        "matched": len(old),
        "kept": len(young),
        "oldest": min((f[1] for f in old), default=None),
        "newest": max((f[1] for f in old), default=None),
        "detail": {
            "collections": [f[0] for f in old],
            "points": sum(f[2] for f in old),
            "age": "since the portal first saw the collection",
        },
    }


def remove_collections(ctx, item, cutoff, measured):
    removed = []
    with _api(ctx, item, 6333) as request:
        for name, first_seen, _points in _collections(ctx, item, cutoff, request):
            if first_seen >= cutoff:
                continue
            ctx.check_cancel()
            request("DELETE", f"/collections/{quote(name, safe='')}")
            CollectionSighting.objects.filter(
                environment=ctx.environment, service_name=item.service, name=name
            ).delete()
            removed.append(name)
            ctx.log.info(f"{item.key}: collection {name} deleted")
    return {"removed": len(removed), "freed_bytes": 0, "detail": {"deleted": removed}}


# -- indices (Elasticsearch) --------------------------------------------------


def _indices(request, item):
    rows = request(
        "GET",
        f"/_cat/indices/{quote(item.pattern, safe='*,')}?format=json&bytes=b"
        "&h=index,creation.date,store.size,docs.count",
    )
    found = []
    for row in rows if isinstance(rows, list) else []:
        if row.get("index", "").startswith("."):
            continue  # system indices are Elasticsearch's own
        created = datetime.fromtimestamp(int(row["creation.date"]) / 1000, tz=UTC)
        found.append((row["index"], created, int(row.get("store.size") or 0)))
    return found


def measure_indices(ctx, item, cutoff):
    with _api(ctx, item, 9200) as request:
        found = _indices(request, item)
    old = [f for f in found if f[1] < cutoff]
    young = [f for f in found if f[1] >= cutoff]
    return {
        "matched": len(old),
        "matched_bytes": sum(f[2] for f in old),
        "kept": len(young),
        "kept_bytes": sum(f[2] for f in young),
        "oldest": min((f[1] for f in old), default=None),
        "newest": max((f[1] for f in old), default=None),
        "detail": {"indices": [f[0] for f in old]},
    }


def remove_indices(ctx, item, cutoff, measured):
    removed, freed = [], 0
    with _api(ctx, item, 9200) as request:
        for name, created, size in _indices(request, item):
            if created >= cutoff:
                continue
            ctx.check_cancel()
            request("DELETE", f"/{quote(name, safe='')}")
            removed.append(name)
            freed += size
    return {
        "removed": len(removed),
        "freed_bytes": freed,
        "detail": {"deleted": removed},
    }

"""Elasticsearch stand-in (STANDIN_KIND=elasticsearch): the index calls the
portal's retention makes, with Elasticsearch 8's request and answer shapes.

- ``GET /`` the cluster's name and version;
- ``GET /_cat/indices[/<pattern>]`` with ``format=json`` (else the text
  table), ``h=`` (columns), ``bytes=b`` (sizes in bytes); values are strings,
  as Elasticsearch answers them; ``creation.date`` is epoch milliseconds;
- ``PUT /<index>`` creates an index; ``settings.index.creation_date`` (epoch
  ms) may set its creation time, as Elasticsearch accepts at creation;
- ``POST /<index>/_doc`` adds a document (counted, its bytes added to the
  index's store size);
- ``DELETE /<index>`` (a comma list of names) deletes it; an unknown index
  answers 404 ``index_not_found_exception``.

Indices persist in ``STANDIN_STORAGE/indices.json``.
"""

import fnmatch
import json
import os
import threading
import time
import urllib.parse
import uuid

__all__ = ["EsStore", "handle"]

VERSION = "8.11.0"
COLUMNS = [
    "health",
    "status",
    "index",
    "uuid",
    "pri",
    "rep",
    "docs.count",
    "docs.deleted",
    "store.size",
    "pri.store.size",
    "creation.date",
    "creation.date.string",
]
DEFAULT_COLUMNS = COLUMNS[:10]


class EsStore:
    """Indices in one JSON file."""

    def __init__(self, root):
        self.path = os.path.join(root, "indices.json")
        self.lock = threading.Lock()
        try:
            with open(self.path) as f:
                self.indices = json.load(f)
        except (OSError, ValueError):
            self.indices = {}

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.indices, f)
        os.replace(tmp, self.path)


def _error(kind, reason, index, status):
    cause = {"type": kind, "reason": reason, "index": index}
    return status, {"error": {"root_cause": [cause], **cause}, "status": status}


def _row(name, index):
    created = int(index["creation_date"])
    size = str(index["size"])
    values = {
        "health": "green",
        "status": "open",
        "index": name,
        "uuid": index["uuid"],
        "pri": "1",
        "rep": "0",
        "docs.count": str(index["docs"]),
        "docs.deleted": "0",
        "store.size": size,
        "pri.store.size": size,
        "creation.date": str(created),
        "creation.date.string": time.strftime(
            "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(created / 1000)
        ),
    }
    return values


def cat_indices(store, pattern, query):
    names = sorted(store.indices)
    if pattern:
        wanted = pattern.split(",")
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in wanted)]
    columns = DEFAULT_COLUMNS
    if query.get("h"):
        columns = [c for c in query["h"][0].split(",") if c in COLUMNS]
    rows = [{c: _row(n, store.indices[n])[c] for c in columns} for n in names]
    if (query.get("format") or [""])[0] == "json":
        return 200, rows
    lines = [" ".join(row[c] for c in columns) for row in rows]
    return 200, "\n".join(lines) + ("\n" if lines else "")


def handle(handler, store, path, body):
    """Answer an Elasticsearch request; return (status, JSON-able or text)."""
    method = handler.command
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query)
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    if not parts and method in ("GET", "HEAD"):
        return 200, {
            "name": "standin",
            "cluster_name": "docker-cluster",
            "version": {"number": VERSION, "build_flavor": "default"},
            "tagline": "You Know, for Search",
        }
    with store.lock:
        if parts[:2] == ["_cat", "indices"] and method == "GET":
            return cat_indices(store, parts[2] if len(parts) > 2 else "", query)
        if len(parts) == 1 and not parts[0].startswith("_"):
            return _index(store, method, parts[0], body)
        if len(parts) == 2 and parts[1] == "_doc" and method == "POST":
            index = store.indices.get(parts[0])
            if index is None:
                # Elasticsearch creates the index on the first document.
                index = store.indices[parts[0]] = _new()
            index["docs"] += 1
            index["size"] += len(body)
            store.save()
            answer = {"_index": parts[0], "_id": uuid.uuid4().hex, "result": "created"}
            return 201, answer
    return 400, {
        "error": f"no handler found for uri [{path}] and method [{method}]",
        "status": 400,
    }


def _new(created=None):
    return {
        "uuid": uuid.uuid4().hex[:22],
        "creation_date": int(created or time.time() * 1000),
        "docs": 0,
        "size": 225,
    }


def _index(store, method, name, body):
    if method == "PUT":
        if name in store.indices:
            return _error(
                "resource_already_exists_exception",
                f"index [{name}/{store.indices[name]['uuid']}] already exists",
                name,
                400,
            )
        try:
            document = json.loads(body) if body.strip() else {}
        except ValueError:
            return 400, {"error": "failed to parse the body", "status": 400}
        settings = document.get("settings") or {}
        created = (settings.get("index") or {}).get("creation_date") or settings.get(
            "index.creation_date"
        )
        store.indices[name] = _new(created)
        store.save()
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
    if method == "DELETE":
        names = name.split(",")
        missing = [n for n in names if n not in store.indices]
        if missing:
            first = missing[0]
            reason = f"no such index [{first}]"
            return _error("index_not_found_exception", reason, first, 404)
        for n in names:
            del store.indices[n]
        store.save()
        return 200, {"acknowledged": True}
    if method in ("GET", "HEAD"):
        if name not in store.indices:
            return _error(
                "index_not_found_exception", f"no such index [{name}]", name, 404
            )
        index = store.indices[name]
        return 200, {
            name: {
                "settings": {
                    "index": {
                        "creation_date": str(index["creation_date"]),
                        "uuid": index["uuid"],
                    }
                }
            }
        }
    return 405, {"error": f"method {method} not allowed", "status": 405}

"""HTTP stand-in for services that cannot run on the test machine.

Standard library only. Configured through the environment:

STANDIN_NAME     service name shown in responses (default "standin")
STANDIN_PORT     port, or comma list of ports, to listen on (default 8080)
STANDIN_KIND     generic | vllm | qdrant | s3 | elasticsearch (default generic)
STANDIN_DEPENDS  comma list of host:port; GET /health checks a TCP connect to each
                 and answers 503 when one fails
STANDIN_MODEL    model id for /v1/models (VLLM_MODEL wins when set)
STANDIN_STORAGE  qdrant: collections and snapshots directory (default /qdrant/storage);
                 s3: buckets and objects directory

With STANDIN_KIND=qdrant the collection, point-count and collection-snapshot
endpoints of Qdrant 1.12 are served with Qdrant's response envelope. Collections
persist as JSON under STANDIN_STORAGE/collections; snapshots are tar files under
STANDIN_STORAGE/snapshots.

With STANDIN_KIND=s3 the S3 API MinIO serves is answered (standin_s3.py: buckets,
ListObjectsV2, objects; requests signed with MINIO_ROOT_USER and
MINIO_ROOT_PASSWORD); unsigned requests for the health paths (/minio/health/live,
/healthz, ...) are health checks.

With STANDIN_KIND=elasticsearch the index calls of Elasticsearch 8 are answered
(standin_es.py: _cat/indices, index create and delete, documents); indices persist
in STANDIN_STORAGE/indices.json.
"""

import email.parser
import email.policy
import hashlib
import io
import json
import os
import random
import re
import signal
import socket
import sys
import tarfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standin_es
import standin_s3

NAME = os.environ.get("STANDIN_NAME", "standin")
KIND = os.environ.get("STANDIN_KIND", "generic")
PORTS = [int(p) for p in os.environ.get("STANDIN_PORT", "8080").split(",") if p.strip()]
DEPENDS = [
    d.strip() for d in os.environ.get("STANDIN_DEPENDS", "").split(",") if d.strip()
]
MODEL = (
    os.environ.get("VLLM_MODEL") or os.environ.get("STANDIN_MODEL") or "standin-model"
)
STORAGE = os.environ.get("STANDIN_STORAGE", "/qdrant/storage")
STARTED = time.time()

HEALTH_PATHS = {
    "/",
    "/health",
    "/healthz",
    "/readyz",
    "/livez",
    "/live",
    "/ready",
    "/minio/health/live",
    "/minio/health/ready",
    "/-/healthy",
    "/-/ready",
    "/api/health",
}


class ApiError(Exception):
    """An error answered with Qdrant's ErrorResponse shape."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def tcp_ok(target):
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def check_name(name):
    if not re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,254}", name):
        raise ApiError(422, f"Validation error: collection_name {name!r} is invalid")


# --- Qdrant store --------------------------------------------------------------------


class QdrantStore:
    """Collections in memory, written through to JSON files so restarts keep them."""

    def __init__(self, root):
        self.collections_dir = os.path.join(root, "collections")
        self.snapshots_dir = os.path.join(root, "snapshots")
        for folder in (self.collections_dir, self.snapshots_dir):
            os.makedirs(folder, exist_ok=True)
        self.lock = threading.Lock()
        self.operation_id = 0
        self.collections = {}
        for fname in sorted(os.listdir(self.collections_dir)):
            if fname.endswith(".json"):
                with open(os.path.join(self.collections_dir, fname)) as f:
                    data = json.load(f)
                self.collections[data["name"]] = data

    def get(self, name):
        if name not in self.collections:
            raise ApiError(404, f"Not found: Collection `{name}` doesn't exist!")
        return self.collections[name]

    def save(self, data):
        path = os.path.join(self.collections_dir, data["name"] + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)

    def create(self, name, config):
        check_name(name)
        with self.lock:
            if name in self.collections:
                raise ApiError(400, f"Wrong input: Collection `{name}` already exists!")
            self.collections[name] = {"name": name, "config": config, "points": {}}
            self.save(self.collections[name])
        return True

    def delete(self, name):
        with self.lock:
            if self.collections.pop(name, None) is None:
                return False
            os.remove(os.path.join(self.collections_dir, name + ".json"))
        return True

    def upsert(self, name, body):
        if "points" in body:
            points = body["points"]
        elif "batch" in body:
            batch = body["batch"]
            payloads = batch.get("payloads") or [None] * len(batch["ids"])
            points = [
                {"id": i, "vector": v, "payload": p}
                for i, v, p in zip(
                    batch["ids"], batch["vectors"], payloads, strict=True
                )
            ]
        else:
            raise ApiError(
                422, "Format error in JSON body: expected `points` or `batch`"
            )
        with self.lock:
            coll = self.get(name)
            size = (coll["config"].get("vectors") or {}).get("size")
            for point in points:
                vector = point.get("vector")
                if size and isinstance(vector, list) and len(vector) != size:
                    raise ApiError(
                        400,
                        "Wrong input: Vector dimension error: "
                        f"expected dim: {size}, got {len(vector)}",
                    )
                coll["points"][json.dumps(point["id"])] = {
                    "id": point["id"],
                    "vector": vector,
                    "payload": point.get("payload") or {},
                }
            self.save(coll)
            self.operation_id += 1
            return {"operation_id": self.operation_id, "status": "completed"}

    def info(self, name):
        coll = self.get(name)
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": len(coll["points"]),
            "segments_count": 1,
            "payload_schema": {},
            "config": {
                "params": {
                    "vectors": coll["config"].get("vectors", {}),
                    "shard_number": 1,
                    "replication_factor": 1,
                    "write_consistency_factor": 1,
                    "on_disk_payload": True,
                },
                "hnsw_config": {
                    "m": 16,
                    "ef_construct": 100,
                    "full_scan_threshold": 10000,
                    "max_indexing_threads": 0,
                    "on_disk": False,
                },
                "optimizer_config": {
                    "deleted_threshold": 0.2,
                    "vacuum_min_vector_number": 1000,
                    "default_segment_number": 0,
                    "max_segment_size": None,
                    "memmap_threshold": None,
                    "indexing_threshold": 20000,
                    "flush_interval_sec": 5,
                    "max_optimization_threads": None,
                },
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": None,
            },
        }

    # Snapshots are tar files holding collection.json (Qdrant's own tars hold segments).
    def snapshot_dir(self, name):
        return os.path.join(self.snapshots_dir, name)

    def describe(self, path):
        with open(path, "rb") as f:
            checksum = hashlib.sha256(f.read()).hexdigest()
        return {
            "name": os.path.basename(path),
            "creation_time": time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(os.path.getmtime(path))
            ),
            "size": os.path.getsize(path),
            "checksum": checksum,
        }

    def create_snapshot(self, name):
        with self.lock:
            data = json.dumps(self.get(name)).encode()
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
        fname = f"{name}-{random.randrange(10**15, 10**16)}-{stamp}.snapshot"
        os.makedirs(self.snapshot_dir(name), exist_ok=True)
        path = os.path.join(self.snapshot_dir(name), fname)
        with tarfile.open(path + ".tmp", "w") as tar:
            member = tarfile.TarInfo("collection.json")
            member.size, member.mtime = len(data), int(time.time())
            tar.addfile(member, io.BytesIO(data))
        os.replace(path + ".tmp", path)
        return self.describe(path)

    def snapshot_path(self, name, snapshot):
        self.get(name)
        path = os.path.join(self.snapshot_dir(name), os.path.basename(snapshot))
        if not snapshot.endswith(".snapshot") or not os.path.isfile(path):
            raise ApiError(404, f"Not found: Snapshot {snapshot} not found")
        return path

    def list_snapshots(self, name):
        self.get(name)
        folder = self.snapshot_dir(name)
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        return [
            self.describe(os.path.join(folder, n))
            for n in names
            if n.endswith(".snapshot")
        ]

    def delete_snapshot(self, name, snapshot):
        os.remove(self.snapshot_path(name, snapshot))
        return True

    def recover(self, name, data, checksum=None):
        if checksum and hashlib.sha256(data).hexdigest() != checksum:
            raise ApiError(400, "Wrong input: Snapshot checksum mismatch")
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                restored = json.load(tar.extractfile("collection.json"))
        except (tarfile.TarError, KeyError, ValueError) as exc:
            raise ApiError(400, f"Wrong input: Invalid snapshot: {exc}") from exc
        check_name(name)
        restored["name"] = name
        with self.lock:
            self.collections[name] = restored
            self.save(restored)
        return True


def fetch_location(location):
    """Bytes of the snapshot at a file:// or http(s):// location (SnapshotRecover)."""
    parsed = urllib.parse.urlparse(location)
    try:
        if parsed.scheme == "file":
            with open(urllib.parse.unquote(parsed.path), "rb") as f:
                return f.read()
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(location, timeout=30) as response:
                return response.read()
    except OSError as exc:
        raise ApiError(
            400, f"Wrong input: Snapshot {location} can't be read: {exc}"
        ) from exc
    raise ApiError(400, f"Wrong input: unsupported snapshot location {location}")


def recover_body(handler, name):
    """PUT .../snapshots/recover with a SnapshotRecover body."""
    body = handler.json_body()
    if not body.get("location"):
        raise ApiError(422, "Validation error in JSON body: [location: field required]")
    return STORE.recover(name, fetch_location(body["location"]), body.get("checksum"))


def recover_upload(handler, name):
    """POST .../snapshots/upload: multipart/form-data, the file in field `snapshot`."""
    head = f"Content-Type: {handler.headers.get('Content-Type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head + handler.body
    )
    parts = [
        p
        for p in message.iter_parts()
        if p.get_param("name", header="content-disposition") == "snapshot"
    ]
    if not parts:
        raise ApiError(400, "Wrong input: multipart field `snapshot` is missing")
    return STORE.recover(
        name,
        parts[0].get_payload(decode=True),
        handler.query.get("checksum", [None])[0],
    )


def count_points(handler, name):
    if handler.json_body().get("filter"):
        raise ApiError(400, "Wrong input: the stand-in does not evaluate filters")
    return {"count": len(STORE.get(name)["points"])}


def get_points(handler, name):
    body, points = handler.json_body(), STORE.get(name)["points"]
    keep = ("id", "payload", "vector") if body.get("with_vector") else ("id", "payload")
    return [
        {k: points[json.dumps(i)][k] for k in keep}
        for i in body.get("ids", [])
        if json.dumps(i) in points
    ]


def download(handler, name, snapshot):
    with open(STORE.snapshot_path(name, snapshot), "rb") as f:
        return f.read()  # bytes: sent as application/octet-stream


STORE = QdrantStore(STORAGE) if KIND == "qdrant" else None
S3 = standin_s3.S3Store(STORAGE) if KIND == "s3" else None
ES = standin_es.EsStore(STORAGE) if KIND == "elasticsearch" else None
NAME_RE, SNAP_RE = r"/collections/([^/]+)", r"/collections/([^/]+)/snapshots/([^/]+)"
# (method, path pattern, function(handler, *path parameters) -> result).
# Comments name the spec's operationIds.
ROUTES = [
    (
        "GET",
        r"/collections",
        lambda h: {"collections": [{"name": n} for n in sorted(STORE.collections)]},
    ),
    ("GET", NAME_RE, lambda h, n: STORE.info(n)),  # get_collection
    ("PUT", NAME_RE, lambda h, n: STORE.create(n, h.json_body())),  # create_collection
    ("DELETE", NAME_RE, lambda h, n: STORE.delete(n)),  # delete_collection
    (
        "PUT",
        NAME_RE + "/points",
        lambda h, n: STORE.upsert(n, h.json_body()),
    ),  # upsert_points
    ("POST", NAME_RE + "/points", get_points),  # get_points
    ("POST", NAME_RE + "/points/count", count_points),  # count_points
    (
        "GET",
        NAME_RE + "/snapshots",
        lambda h, n: STORE.list_snapshots(n),
    ),  # list_snapshots
    (
        "POST",
        NAME_RE + "/snapshots",
        lambda h, n: STORE.create_snapshot(n),
    ),  # create_snapshot
    ("PUT", NAME_RE + "/snapshots/recover", recover_body),  # recover_from_snapshot
    (
        "POST",
        NAME_RE + "/snapshots/upload",
        recover_upload,
    ),  # recover_from_uploaded_snapshot
    ("GET", SNAP_RE, download),  # get_snapshot
    ("DELETE", SNAP_RE, lambda h, n, s: STORE.delete_snapshot(n, s)),  # delete_snapshot
]


class Handler(BaseHTTPRequestHandler):
    server_version = "standin/1"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this a keep-alive
    # client waits for a delayed ACK (about 40 ms) on every request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.headers.get("User-Agent") != "standin-healthcheck":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            print(f"{stamp} {NAME} {self.client_address[0]} {fmt % args}", flush=True)

    def send(self, code, body, content_type="application/json"):
        if not isinstance(body, bytes):
            body = (
                json.dumps(body).encode()
                if content_type == "application/json"
                else body.encode()
            )
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json_body(self):
        try:
            return json.loads(self.body) if self.body.strip() else {}
        except ValueError as exc:
            raise ApiError(400, f"Format error in JSON body: {exc}") from exc

    def qdrant(self, path, started):
        """Serve a Qdrant route; False when none matches."""
        for method, pattern, function in ROUTES:  # noqa: B007 - used after break
            match = re.fullmatch(pattern, path)
            if method == self.command and match:
                break
        else:
            return False
        try:
            result = function(self, *(urllib.parse.unquote(g) for g in match.groups()))
        except Exception as exc:  # noqa: BLE001 - answer 500 instead of dropping the connection
            if not isinstance(exc, ApiError):
                traceback.print_exc()
            self.send(
                getattr(exc, "code", 500),
                {
                    "status": {"error": str(exc)},
                    "result": None,
                    "time": time.time() - started,
                },
            )
            return True
        if isinstance(result, bytes):
            self.send(200, result, "application/octet-stream")
        elif self.query.get("wait") == ["false"] and self.command != "GET":
            # wait=false asks for 202 "accepted"; having finished already is allowed.
            self.send(202, {"status": "accepted", "time": time.time() - started})
        else:
            self.send(
                200, {"result": result, "status": "ok", "time": time.time() - started}
            )
        return True

    def route(self):
        started = time.time()
        url = urllib.parse.urlsplit(self.path)
        path, self.query = url.path.rstrip("/") or "/", urllib.parse.parse_qs(url.query)
        # Unsigned requests for a health path (not "/": ListBuckets) are
        # health checks; everything else is S3, bodies streamed to disk.
        if S3 is not None and (
            path == "/" or path not in HEALTH_PATHS or "Authorization" in self.headers
        ):
            return standin_s3.handle(self, S3)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            return self.send(
                411,
                {"status": {"error": "chunked bodies are not supported"}, "time": 0},
            )
        # Read every body up front: keep-alive connections stay in step on any answer.
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if STORE is not None and self.qdrant(path, started):
            return
        if ES is not None and not (
            path in HEALTH_PATHS - {"/"} and self.command in ("GET", "HEAD")
        ):
            code, answer = standin_es.handle(self, ES, path, self.body)
            if isinstance(answer, str):
                return self.send(code, answer, "text/plain; charset=UTF-8")
            return self.send(code, answer)
        if self.command in ("GET", "HEAD") and path in HEALTH_PATHS:
            return self.health(path)
        if self.command in ("GET", "HEAD") and path in ("/v1/models", "/models"):
            return self.send(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": MODEL,
                            "object": "model",
                            "created": int(STARTED),
                            "owned_by": NAME,
                            "root": MODEL,
                            "parent": None,
                        }
                    ],
                },
            )
        self.send(404, {"name": NAME, "error": f"no route for {self.command} {path}"})

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = route

    def health(self, path):
        if KIND == "qdrant" and path in ("/healthz", "/readyz", "/livez"):
            return self.send(200, "healthz check passed", "text/plain")
        if KIND == "qdrant" and path == "/":
            return self.send(
                200,
                {
                    "title": "qdrant - vector search engine",
                    "version": "1.12.0",
                    "commit": None,
                },
            )
        body = {
            "name": NAME,
            "kind": KIND,
            "status": "ok",
            "uptime": round(time.time() - STARTED, 3),
        }
        code = 200
        if path == "/health" and DEPENDS:
            body["depends"] = {target: tcp_ok(target) for target in DEPENDS}
            if not all(body["depends"].values()):
                body["status"], code = "unavailable", 503
        self.send(code, body)


def main():
    servers = [ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in PORTS]
    for server in servers:  # ThreadingHTTPServer: one daemon thread per request
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    # PID 1 has no default signal handling: without these "docker stop" waits 10 s.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"{NAME}: {KIND} stand-in listening on {','.join(map(str, PORTS))}", flush=True
    )
    stop.wait()
    for server in servers:
        server.shutdown()
    print(f"{NAME}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

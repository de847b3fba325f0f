"""Qdrant: a snapshot of every collection through Qdrant's snapshot API.

Per collection (all of them, or ``qdrant_settings.collections``), as in the
Qdrant 1.12 API (``specs/qdrant-openapi-v1.12.json``):

1. ``POST /collections/{name}/snapshots?wait=true`` (create_snapshot)
   answers the snapshot's name, size and sha256;
2. ``GET /collections/{name}/snapshots/{snapshot}`` (get_snapshot) is
   streamed into restic as the member ``<name>.snapshot`` of one tar,
   ``collections.tar``, whose first member ``collections.json`` lists the
   snapshots; the bytes must add up to the size and the checksum Qdrant
   announced, or restic writes no snapshot;
3. ``DELETE /collections/{name}/snapshots/{snapshot}`` (delete_snapshot)
   removes it from Qdrant's disk, also when reading it failed.

How Qdrant is reached: from a short-lived labelled helper container (the
environment's helper image, BusyBox) on the service's own stack network,
by the service's name. ``wget`` streams a snapshot to the helper's stdout,
which the engine streams to the worker; the small JSON requests go through
``nc`` so every method (DELETE too) and Qdrant's error text come back. This
works wherever the engine is (a remote ``tcp://`` or ``ssh://`` host
included) and needs no published port: only the Docker API travels. An API
key (``qdrant_settings.api_key``, a ``${VAR}`` reference) reaches the
helper's commands in their exec environment, never on a command line.

The manifest: for every collection the exact point count (count_points
with ``exact``), Qdrant's ``points_count`` and vector parameters
(get_collection), and the total.
"""

import hashlib
import json
from contextlib import contextmanager
from urllib.parse import quote

from stacks import engine
from stacks.secrets import MissingSecret, environ_for, resolve, sources_hint

from ..tarstream import member, tar_stream
from ..tiers import BackupError
from .base import Strategy, counted

__all__ = ["QdrantStrategy"]

DEFAULT_PORT = 6333
# The helper sleeps at most this long (a backup's job timeout); a helper
# left by a killed worker ends by itself.
HELPER_LIFETIME = 6 * 3600
HELPER_PURPOSE = "qdrant.api"
INDEX_NAME = "collections.json"
ARCHIVE_NAME = "collections.tar"

# API requests go through stacks.engine.api_request. A download through
# wget: URL; the key comes from the exec environment.
DOWNLOAD_SCRIPT = (
    'if [ -n "$QDRANT_API_KEY" ]; then '
    'exec wget -q -O - --header "api-key: $QDRANT_API_KEY" "$1"; '
    'else exec wget -q -O - "$1"; fi'
)


class QdrantStrategy(Strategy):
    """Collection snapshots of Qdrant (``collection``), read through its API."""

    filename = ARCHIVE_NAME

    def __init__(self, context, name):
        super().__init__(context)
        self.name = name
        self.options = self.settings("qdrant_settings")
        self.port = int(self.options.get("port") or DEFAULT_PORT)
        self.host = self.context.service.name
        self._environ = self._api_key()

    @property
    def service(self):
        return self.context.service.name

    def _api_key(self):
        reference = self.options.get("api_key")
        if not reference:
            return None
        environment = self.context.environment
        try:
            key = resolve(
                str(reference), environ_for(environment), service=self.service
            )
        except MissingSecret as exc:
            raise BackupError(
                f"The Qdrant API key of {self.service}: {exc} "
                f"({sources_hint(environment)})."
            ) from None
        return {"QDRANT_API_KEY": key}

    # -- the helper next to Qdrant ---------------------------------------------

    def _network(self):
        attrs = self.context.client.api.inspect_container(self.context.container)
        networks = sorted((attrs["NetworkSettings"].get("Networks") or {}).keys())
        if not networks:
            raise BackupError(
                f"The container of {self.service} is on no network a helper could "
                "join to reach its API."
            )
        return networks[0]

    @contextmanager
    def helper(self):
        """Yield the id of a running helper on Qdrant's network."""
        context = self.context
        with engine.helper_container(
            context.client,
            environment=context.environment,
            purpose=HELPER_PURPOSE,
            owner=context.owner,
            command=["sleep", str(HELPER_LIFETIME)],
            network_mode=self._network(),
            init=True,
        ) as cid:
            context.client.api.start(cid)
            yield cid

    def request(self, helper, method, path, body=None):
        """Send one API request from ``helper``; return the JSON ``result``."""
        try:
            answer = engine.api_request(
                self.context.client,
                helper,
                self.host,
                self.port,
                method,
                path,
                body,
                api_key=(self._environ or {}).get("QDRANT_API_KEY"),
            )
        except engine.NoApiAnswer as exc:
            raise BackupError(
                f"Qdrant in {self.service} did not answer {method} {path}: {exc.detail}"
            )
        document = answer.document
        if answer.status >= 300:
            error = (document.get("status") or {}) if isinstance(document, dict) else {}
            text = error.get("error") if isinstance(error, dict) else None
            raise BackupError(
                f"Qdrant in {self.service} answered {method} {path} with "
                f"{answer.status}: {text or answer.text()}"
            )
        return document.get("result")

    # -- manifest -------------------------------------------------------------

    def collections(self, helper):
        """Return the names of the collections to back up."""
        existing = [
            c["name"]
            for c in (self.request(helper, "GET", "/collections") or {}).get(
                "collections", []
            )
        ]
        wanted = self.options.get("collections")
        if not wanted:
            return sorted(existing)
        missing = [name for name in wanted if name not in existing]
        if missing:
            raise BackupError(
                f"Qdrant in {self.service} has no collection "
                f"{', '.join(missing)} (qdrant_settings.collections); it has: "
                f"{', '.join(sorted(existing)) or 'none'}."
            )
        return list(wanted)

    def manifest(self):
        collections = {}
        with self.helper() as helper:
            for name in self.collections(helper):
                path = f"/collections/{_segment(name)}"
                info = self.request(helper, "GET", path) or {}
                count = self.request(
                    helper, "POST", f"{path}/points/count", {"exact": True}
                )
                params = (info.get("config") or {}).get("params") or {}
                collections[name] = {
                    "points": int((count or {}).get("count") or 0),
                    "points_count": info.get("points_count"),
                    "vectors": params.get("vectors"),
                }
        return {
            "engine": "qdrant",
            "collections": collections,
            "points": sum(c["points"] for c in collections.values()),
            "file": ARCHIVE_NAME,
        }

    # -- the data -------------------------------------------------------------

    def backup(self, repository, *, tags, host):
        context = self.context
        with self.helper() as helper:
            names = self.collections(helper)
            snapshots = {}
            try:
                for name in names:
                    context.check_cancel()
                    snapshots[name] = self.request(
                        helper,
                        "POST",
                        f"/collections/{_segment(name)}/snapshots?wait=true",
                    )
                    context.log.info(
                        f"{self.service}: snapshot {snapshots[name]['name']} of "
                        f"{name} ({snapshots[name]['size']} bytes)"
                    )
                index = json.dumps(
                    {name: snapshots[name] for name in names}, indent=1
                ).encode()
                archive = tar_stream(self._members(helper, names, snapshots, index))
                return repository.backup_stream(
                    counted(archive, context.check_cancel, on_bytes=context.progress),
                    filename=ARCHIVE_NAME,
                    tags=tags,
                    host=host,
                )
            finally:
                self._delete(helper, snapshots)

    def _members(self, helper, names, snapshots, index):
        yield member(INDEX_NAME, len(index)), [index]
        for name in names:
            description = snapshots[name]
            yield (
                member(
                    f"{name}.snapshot",
                    description["size"],
                    pax={"QDRANT.collection": name},
                ),
                self._download(helper, name, description),
            )

    def _download(self, helper, name, description):
        url = (
            f"http://{self.host}:{self.port}/collections/{_segment(name)}/snapshots/"
            f"{_segment(description['name'])}"
        )
        digest = hashlib.sha256()
        stream = engine.exec_stream(
            self.context.client,
            helper,
            ["sh", "-c", DOWNLOAD_SCRIPT, "sh", url],
            environment=self._environ,
        )
        with stream:
            for chunk in stream:
                digest.update(chunk)
                yield chunk
        result = stream.result
        if result is None or not result.ok:
            raise BackupError(
                f"Downloading snapshot {description['name']} of {name} from "
                f"{self.service} failed: "
                f"{result.stderr_text(300) if result else 'no exit code'}"
            )
        checksum = description.get("checksum")
        if checksum and digest.hexdigest() != checksum:
            raise BackupError(
                f"Snapshot {description['name']} of {name} from {self.service} does "
                "not match the checksum Qdrant announced; nothing was kept."
            )

    def _delete(self, helper, snapshots):
        for name, description in snapshots.items():
            try:
                self.request(
                    helper,
                    "DELETE",
                    f"/collections/{_segment(name)}/snapshots/"
                    f"{_segment(description['name'])}?wait=true",
                )
            except (BackupError, engine.EngineError) as exc:
                self.context.log.warning(
                    f"{self.service}: snapshot {description['name']} of {name} was "
                    f"not deleted from Qdrant: {exc}"
                )


def _segment(value):
    return quote(str(value), safe="")

"""MinIO: every bucket read through the S3 API (boto3) into one tar stream.

``bucket`` lists the buckets (``minio_settings.backup_all_buckets``, the
default; else the names in ``minio_settings.buckets``), lists each one's
objects page by page (ListObjectsV2) and streams every object (GetObject)
as a member of ``buckets.tar``: ``<bucket>/`` a directory (so an empty
bucket survives), ``<bucket>/<key>`` each object. The exact key, ETag,
content type and user metadata ride in the member's PAX header
(``S3.key``, ``S3.etag``, ``S3.content_type``, ``S3.meta.<name>``); a key
that is no safe relative path (``../x``, ``/x``, ``a//b``, ``dir/``) is
stored as ``<bucket>/.s3-keys/<sha256 of the key>`` with its key in the
header. Nothing is written to disk: each object's body streams from the
response into restic. An object deleted between listing and reading is
left out with a warning.

Where MinIO is: ``minio_settings.endpoint`` when set (a URL, ``${VAR}``
references allowed), else the host port the service publishes for
``minio_settings.port`` (default 9000) on the environment's bind address.
The worker must reach that port: with a remote Docker host whose ports
bind to its own 127.0.0.1, set ``endpoint`` (or run the worker on that
host, as one worker per Docker host does). Credentials: the service's own
``MINIO_ROOT_USER`` and ``MINIO_ROOT_PASSWORD`` references (or
``minio_settings.access_key``/``secret_key``), resolved from the
environment's variables; they are never logged or recorded.

The manifest: per bucket the object count, the total bytes and the sha256
of a sample of objects (``minio_settings.sample_objects``, default 3: those
whose key hashes lowest, a sample that stays the same while the data
does).
"""

import hashlib
import heapq
import re

import boto3
import botocore.exceptions
from botocore.config import Config

from stacks.config import effective_service, published_ports
from stacks.secrets import MissingSecret, environ_for, resolve, sources_hint

from ..tarstream import directory, member, tar_stream
from ..tiers import BackupError
from .base import Strategy, counted

__all__ = ["MinioStrategy", "member_name"]

ARCHIVE_NAME = "buckets.tar"
DEFAULT_PORT = 9000
DEFAULT_SAMPLE = 3
CHUNK = 1 << 20
# Where keys that are no safe relative path are kept in the archive.
UNSAFE_FOLDER = ".s3-keys"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def member_name(bucket, key):
    """Return the archive path of object ``key`` of ``bucket``."""
    parts = key.split("/")
    unsafe = (
        not key
        or key.startswith("/")
        or key.endswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or parts[0] == UNSAFE_FOLDER
        or _CONTROL.search(key)
    )
    if unsafe:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{bucket}/{UNSAFE_FOLDER}/{digest}"
    return f"{bucket}/{key}"


class MinioStrategy(Strategy):
    """Every bucket of MinIO (``bucket``), through the S3 API."""

    filename = ARCHIVE_NAME

    def __init__(self, context, name):
        super().__init__(context)
        self.name = name
        self.options = self.settings("minio_settings")
        self.environ = environ_for(context.environment)
        self.endpoint = self._endpoint()
        access_key, secret_key = self._credentials()
        self.s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=str(self.options.get("region") or "us-east-1"),
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=10,
                read_timeout=300,
                retries={"max_attempts": 3, "mode": "standard"},
                # The endpoint is the environment's own; a worker's proxy
                # settings are for other traffic.
                proxies={},
            ),
        )

    @property
    def service(self):
        return self.context.service.name

    def _resolve(self, text, what):
        environment = self.context.environment
        try:
            return resolve(str(text), self.environ, service=self.service)
        except MissingSecret as exc:
            raise BackupError(
                f"The {what} of {self.service}: {exc} ({sources_hint(environment)})."
            ) from None

    def _endpoint(self):
        if self.context.endpoint:
            return self.context.endpoint.rstrip("/")
        if self.options.get("endpoint"):
            return self._resolve(self.options["endpoint"], "S3 endpoint").rstrip("/")
        port = int(self.options.get("port") or DEFAULT_PORT)
        context = self.context
        for published in published_ports(
            context.service, context.environment, self.environ
        ):
            if published.target == port and published.published:
                host = published.host_ip
                if host in ("", "0.0.0.0", "::"):
                    host = "127.0.0.1"
                if ":" in host:
                    host = f"[{host}]"
                return f"http://{host}:{published.published}"
        raise BackupError(
            f"{self.service} publishes no host port for its S3 port {port} in "
            f"{context.environment.name}; publish it, or set "
            "minio_settings.endpoint."
        )

    def _credentials(self):
        env = effective_service(self.context.service, self.context.environment)
        variables = env.get("environment") or {}
        access = self.options.get("access_key") or variables.get("MINIO_ROOT_USER")
        secret = self.options.get("secret_key") or variables.get("MINIO_ROOT_PASSWORD")
        if not access or not secret:
            raise BackupError(
                f"{self.service} has no MINIO_ROOT_USER and MINIO_ROOT_PASSWORD in "
                "its environment; set minio_settings.access_key and secret_key "
                "(${VAR} references)."
            )
        return (
            self._resolve(access, "S3 access key"),
            self._resolve(secret, "S3 secret key"),
        )

    def _fail(self, what, exc):
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error") or {}
            detail = f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
        else:
            detail = str(exc)
        return BackupError(
            f"MinIO of {self.service} at {self.endpoint}: {what}: {detail}"
        )

    # -- listing ----------------------------------------------------------------

    def buckets(self):
        """Return the names of the buckets to back up."""
        try:
            existing = [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise self._fail("listing the buckets failed", exc) from None
        if self.options.get("backup_all_buckets", True) not in (False, "false"):
            return sorted(existing)
        wanted = list(self.options.get("buckets") or [])
        if not wanted:
            raise BackupError(
                "minio_settings.backup_all_buckets is off and minio_settings.buckets "
                f"names no bucket of {self.service} to back up."
            )
        missing = [name for name in wanted if name not in existing]
        if missing:
            has = ", ".join(sorted(existing)) or "none"
            raise BackupError(
                f"{self.service} has no bucket {', '.join(missing)} "
                f"(minio_settings.buckets); it has: {has}."
            )
        return wanted

    def objects(self, bucket):
        """Yield the listing entries of ``bucket``'s objects, page by page."""
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket):
                yield from page.get("Contents", [])
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise self._fail(f"listing bucket {bucket} failed", exc) from None

    def _get(self, bucket, key):
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise self._fail(f"reading {bucket}/{key} failed", exc) from None

    def _body(self, response, bucket, key):
        try:
            yield from response["Body"].iter_chunks(CHUNK)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise self._fail(f"reading {bucket}/{key} failed", exc) from None
        finally:
            response["Body"].close()

    # -- manifest -------------------------------------------------------------

    def manifest(self):
        size = int(self.options.get("sample_objects", DEFAULT_SAMPLE))
        buckets = {}
        for bucket in self.buckets():
            count = total = 0
            lowest = []  # (-hash, key): the ``size`` keys that hash lowest
            for entry in self.objects(bucket):
                if count % 1000 == 0:
                    self.context.check_cancel()
                count += 1
                total += int(entry.get("Size") or 0)
                rank = hashlib.sha256(entry["Key"].encode("utf-8", "surrogatepass"))
                item = (-int.from_bytes(rank.digest()[:8], "big"), entry["Key"])
                if len(lowest) < size:
                    heapq.heappush(lowest, item)
                elif size and item > lowest[0]:
                    heapq.heapreplace(lowest, item)
            sample = {}
            for _rank, key in sorted(lowest, key=lambda i: i[1]):
                response = self._get(bucket, key)
                if response is None:
                    continue
                digest = hashlib.sha256()
                for chunk in self._body(response, bucket, key):
                    digest.update(chunk)
                sample[key] = digest.hexdigest()
            buckets[bucket] = {"objects": count, "bytes": total, "sample": sample}
        return {
            "engine": "s3",
            "endpoint": self.endpoint,
            "buckets": buckets,
            "objects": sum(b["objects"] for b in buckets.values()),
            "bytes": sum(b["bytes"] for b in buckets.values()),
            "file": ARCHIVE_NAME,
        }

    # -- the data -------------------------------------------------------------

    def backup(self, repository, *, tags, host):
        context = self.context
        archive = tar_stream(self._members())
        return repository.backup_stream(
            counted(archive, context.check_cancel, on_bytes=context.progress),
            filename=ARCHIVE_NAME,
            tags=tags,
            host=host,
        )

    def _members(self):
        log = self.context.log
        for bucket in self.buckets():
            yield directory(bucket, pax={"S3.bucket": bucket}), []
            count = 0
            for entry in self.objects(bucket):
                key = entry["Key"]
                response = self._get(bucket, key)
                if response is None:
                    log.warning(f"{bucket}/{key} was deleted while it was read")
                    continue
                modified = response.get("LastModified") or entry.get("LastModified")
                pax = {
                    "S3.bucket": bucket,
                    "S3.key": key,
                    "S3.etag": response.get("ETag", ""),
                    "S3.content_type": response.get("ContentType", ""),
                }
                for name, value in (response.get("Metadata") or {}).items():
                    pax[f"S3.meta.{name}"] = value
                info = member(
                    member_name(bucket, key),
                    response["ContentLength"],
                    mtime=modified.timestamp() if modified else None,
                    pax=pax,
                )
                count += 1
                yield info, self._body(response, bucket, key)
            log.info(f"{self.service}: bucket {bucket}: {count} objects read")

"""MinIO: every object of the backup put back through the S3 API.

``buckets.tar`` streams from restic; each ``<bucket>/`` member makes sure
the bucket exists, each object member is put back (PutObject) with its
exact key, content type and user metadata from the member's PAX header.
An object's bytes pass through a spooled file (in memory up to 16 MiB,
then on the worker's temporary disk): the S3 API signs a plain-HTTP
request's body, so the body must be read twice.

**What happens to objects that are not in the backup**: a restore makes
every bucket of the backup hold exactly the backup's objects, so objects
written to those buckets after the backup are deleted (a restore in a
protected environment runs only after a fresh backup, which keeps them).
Buckets that are not in the backup are left alone.
"""

import hashlib
import tarfile
import tempfile

import botocore.exceptions

from ..strategies.minio import MinioStrategy
from ..tarstream import ChunkReader
from .base import Loader, counts, item, read_chunks

__all__ = ["MinioLoader"]

SPOOL_BYTES = 16 << 20
_S3_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class MinioLoader(Loader):
    """Objects put back through the S3 API."""

    publish = (9000,)

    def strategy(self):
        return MinioStrategy(self.target.context(), self.source.strategy)

    def overwrites(self):
        buckets = self.source.manifest.get("buckets") or {}
        return (
            {
                "buckets": sorted(buckets),
                "objects_not_in_the_backup": "deleted from those buckets",
            },
            {
                "objects": {b: f.get("objects") for b, f in buckets.items()},
                "bytes": {b: f.get("bytes") for b, f in buckets.items()},
            },
        )

    def load(self):
        target, source = self.target, self.source
        impl = self.strategy()
        restored, deleted = {}, {}
        current = None
        with source.repository.dump(source.snapshot_id, source.file) as data:
            with tarfile.open(fileobj=ChunkReader(data), mode="r|") as archive:
                for entry in archive:
                    target.check_cancel()
                    bucket = (
                        entry.pax_headers.get("S3.bucket")
                        or entry.name.split("/", 1)[0]
                    )
                    if bucket != current:
                        if current is not None:
                            deleted[current] = self._prune(impl, current, restored)
                        current = bucket
                        restored[bucket] = set()
                        self._bucket(impl, bucket)
                    if not entry.isfile():
                        continue
                    key = entry.pax_headers.get("S3.key") or entry.name.split("/", 1)[1]
                    self._put(impl, bucket, key, entry, archive.extractfile(entry))
                    restored[bucket].add(key)
                if current is not None:
                    deleted[current] = self._prune(impl, current, restored)
        for bucket, keys in restored.items():
            gone = deleted[bucket]
            self.log.info(
                f"{target.name}: bucket {bucket}: {len(keys)} object(s) put back"
                + (f", {gone} not in the backup deleted" if gone else "")
            )
        return {
            "objects": {b: len(k) for b, k in restored.items()},
            "deleted": deleted,
        }

    def _bucket(self, impl, bucket):
        try:
            impl.s3.create_bucket(Bucket=bucket)
        except impl.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        except botocore.exceptions.ClientError as exc:
            code = (exc.response.get("Error") or {}).get("Code")
            if code not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                raise impl._fail(f"creating bucket {bucket} failed", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise impl._fail(f"creating bucket {bucket} failed", exc) from None

    def _put(self, impl, bucket, key, entry, handle):
        headers = entry.pax_headers
        metadata = {
            name[len("S3.meta.") :]: value
            for name, value in headers.items()
            if name.startswith("S3.meta.")
        }
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
            for block in read_chunks(handle):
                body.write(block)
            body.seek(0)
            extra = {}
            if headers.get("S3.content_type"):
                extra["ContentType"] = headers["S3.content_type"]
            try:
                impl.s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentLength=entry.size,
                    Metadata=metadata,
                    **extra,
                )
            except _S3_ERRORS as exc:
                raise impl._fail(f"putting back {bucket}/{key} failed", exc) from None

    def _prune(self, impl, bucket, restored):
        """Delete the objects of ``bucket`` the backup does not hold."""
        keep = restored[bucket]
        extra = [e["Key"] for e in impl.objects(bucket) if e["Key"] not in keep]
        for key in extra:
            try:
                impl.s3.delete_object(Bucket=bucket, Key=key)
            except _S3_ERRORS as exc:
                raise impl._fail(f"deleting {bucket}/{key} failed", exc) from None
        return len(extra)

    def measure(self):
        return self.strategy().manifest()

    def compare(self, found):
        expected = self.source.manifest.get("buckets") or {}
        got = found.get("buckets") or {}
        if not self.target.scratch:
            got = {b: f for b, f in got.items() if b in expected}
        items = [
            *counts(
                "objects in {name}",
                {b: f.get("objects") for b, f in expected.items()},
                {b: f.get("objects") for b, f in got.items()},
                missing="no bucket",
            ),
            *counts(
                "bytes in {name}",
                {b: f.get("bytes") for b, f in expected.items()},
                {b: f.get("bytes") for b, f in got.items()},
                missing="no bucket",
            ),
        ]
        for bucket, facts in sorted(expected.items()):
            for key, digest in sorted((facts.get("sample") or {}).items()):
                found_digest = ((got.get(bucket) or {}).get("sample") or {}).get(key)
                if found_digest is None and bucket in got:
                    found_digest = self._digest(bucket, key)
                items.append(item(f"sha256 of {bucket}/{key}", digest, found_digest))
        return items

    def _digest(self, bucket, key):
        """Return the sha256 of one object, or "missing"."""
        impl = self.strategy()
        response = impl._get(bucket, key)
        if response is None:
            return "missing"
        digest = hashlib.sha256()
        for block in impl._body(response, bucket, key):
            digest.update(block)
        return digest.hexdigest()

"""S3 objects (MinIO) by ``LastModified``, with the backups' MinIO client."""

import botocore.exceptions

from backups.models import BackupStrategy
from backups.strategies import BackupContext
from backups.strategies.minio import MinioStrategy
from backups.tiers import BackupError
from stacks.models import Service

from .base import CleanupError


def s3_client(ctx, item):
    """Return (boto3 client, bucket, prefix): the backups' MinIO client."""
    service = Service.objects.select_related("stack").get(name=item.service)
    strategy = BackupStrategy.objects.filter(service=item.service).first()
    if strategy is None:
        strategy = BackupStrategy(service=item.service, method="minio", settings={})
    context = BackupContext(
        environment=ctx.environment,
        stack=service.stack,
        service=service,
        strategy=strategy,
        client=ctx.client,
        container=ctx.container(item.service),
        log=ctx.log,
        check_cancel=ctx.check_cancel,
        owner=ctx.owner,
    )
    try:
        client = MinioStrategy(context, "bucket").s3
    except BackupError as exc:
        raise CleanupError(str(exc)) from None
    bucket = item.settings.get("bucket") or item.name
    return client, bucket, item.settings.get("prefix") or ""


def _objects(client, bucket, prefix):
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])
    except botocore.exceptions.ClientError as exc:
        code = (exc.response.get("Error") or {}).get("Code")
        if code == "NoSuchBucket":
            return
        raise CleanupError(f"Listing {bucket}/{prefix}: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise CleanupError(f"Listing {bucket}/{prefix}: {exc}") from None


def measure_objects(ctx, item, cutoff):
    client, bucket, prefix = s3_client(ctx, item)
    old = young = old_bytes = young_bytes = 0
    oldest = newest = None
    for entry in _objects(client, bucket, prefix):
        modified = entry["LastModified"]
        if modified < cutoff:
            old += 1
            old_bytes += entry.get("Size") or 0
            oldest = modified if oldest is None else min(oldest, modified)
            newest = modified if newest is None else max(newest, modified)
        else:
            young += 1
            young_bytes += entry.get("Size") or 0
    return {
        "matched": old,
        "matched_bytes": old_bytes,
        "kept": young,
        "kept_bytes": young_bytes,
        "oldest": oldest,
        "newest": newest,
    }


def remove_objects(ctx, item, cutoff, measured):
    client, bucket, prefix = s3_client(ctx, item)
    doomed = [
        (entry["Key"], entry.get("Size") or 0)
        for entry in _objects(client, bucket, prefix)
        if entry["LastModified"] < cutoff
    ]
    removed = freed = 0
    for index, (key, size) in enumerate(doomed):
        if index % 100 == 0:
            ctx.check_cancel()
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
        ) as exc:
            raise CleanupError(f"Deleting {bucket}/{key}: {exc}") from None
        removed += 1
        freed += size
    return {"removed": removed, "freed_bytes": freed}

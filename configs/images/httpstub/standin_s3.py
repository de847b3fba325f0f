"""The S3 API of the HTTP stand-in (STANDIN_KIND=s3), standing in for MinIO.

Standard library only. Path-style requests (``/<bucket>/<key>``), signed
with AWS Signature Version 4 by the access key ``MINIO_ROOT_USER`` and the
secret ``MINIO_ROOT_PASSWORD`` (STANDIN_S3_ACCESS_KEY / _SECRET_KEY win);
the signature is checked, and a request without one, or by another access
key, is refused as MinIO refuses it. Served:

ListBuckets          GET /
CreateBucket         PUT /<bucket>
HeadBucket           HEAD /<bucket>
DeleteBucket         DELETE /<bucket>            (empty buckets only)
ListObjectsV2        GET /<bucket>?list-type=2   (prefix, delimiter,
                     start-after, max-keys, continuation-token,
                     encoding-type=url)
PutObject            PUT /<bucket>/<key>         (Content-Type, x-amz-meta-*)
GetObject            GET /<bucket>/<key>
HeadObject           HEAD /<bucket>/<key>
DeleteObject         DELETE /<bucket>/<key>

Objects are files under STANDIN_STORAGE/s3/<bucket>/ named by the sha256
of their key, each with a JSON file of its key, size, ETag (MD5), content
type and metadata; bodies are streamed to and from disk, never held whole.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import threading
import urllib.parse
from xml.sax.saxutils import escape

__all__ = ["S3Store", "handle"]

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
CHUNK = 1 << 20
MAX_KEYS = 1000
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
UNSIGNED = "UNSIGNED-PAYLOAD"


class S3Error(Exception):
    """An error answered in S3's XML shape."""

    def __init__(self, status, code, message, resource=""):
        super().__init__(message)
        self.status, self.code, self.resource = status, code, resource


def _now():
    return datetime.datetime.now(datetime.UTC)


def _iso(stamp):
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )


def _http_date(stamp):
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )


class S3Store:
    """Buckets and objects on disk, indexed in memory."""

    def __init__(self, root):
        self.root = os.path.join(root, "s3")
        os.makedirs(self.root, exist_ok=True)
        self.lock = threading.Lock()
        self.buckets = {}
        for name in sorted(os.listdir(self.root)):
            info = os.path.join(self.root, name, "bucket.json")
            if not os.path.isfile(info):
                continue
            with open(info) as f:
                created = json.load(f)["created"]
            objects = {}
            meta_dir = os.path.join(self.root, name, "meta")
            for fname in os.listdir(meta_dir):
                if fname.endswith(".json"):
                    with open(os.path.join(meta_dir, fname)) as f:
                        meta = json.load(f)
                    objects[meta["key"]] = meta
            self.buckets[name] = {"created": created, "objects": objects}

    # -- buckets ---------------------------------------------------------------

    def bucket(self, name):
        if name not in self.buckets:
            raise S3Error(
                404, "NoSuchBucket", "The specified bucket does not exist", name
            )
        return self.buckets[name]

    def create_bucket(self, name):
        if not BUCKET_RE.fullmatch(name) or ".." in name:
            raise S3Error(
                400, "InvalidBucketName", "The specified bucket is not valid.", name
            )
        with self.lock:
            if name in self.buckets:
                raise S3Error(
                    409,
                    "BucketAlreadyOwnedByYou",
                    "Your previous request to create the named bucket succeeded "
                    "and you already own it.",
                    name,
                )
            folder = os.path.join(self.root, name)
            for sub in ("objects", "meta"):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
            created = _now().timestamp()
            with open(os.path.join(folder, "bucket.json"), "w") as f:
                json.dump({"name": name, "created": created}, f)
            self.buckets[name] = {"created": created, "objects": {}}

    def delete_bucket(self, name):
        with self.lock:
            bucket = self.bucket(name)
            if bucket["objects"]:
                raise S3Error(
                    409,
                    "BucketNotEmpty",
                    "The bucket you tried to delete is not empty",
                    name,
                )
            folder = os.path.join(self.root, name)
            for sub in ("objects", "meta"):
                os.rmdir(os.path.join(folder, sub))
            os.remove(os.path.join(folder, "bucket.json"))
            os.rmdir(folder)
            del self.buckets[name]

    # -- objects ---------------------------------------------------------------

    def _paths(self, bucket, key):
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        folder = os.path.join(self.root, bucket)
        return (
            os.path.join(folder, "objects", digest),
            os.path.join(folder, "meta", digest + ".json"),
        )

    def get(self, bucket, key):
        meta = self.bucket(bucket)["objects"].get(key)
        if meta is None:
            raise S3Error(
                404, "NoSuchKey", "The specified key does not exist.", f"{bucket}/{key}"
            )
        return meta, self._paths(bucket, key)[0]

    def put(self, bucket, key, reader, size, *, content_type, metadata, sha256=None):
        """Store ``size`` bytes read from ``reader``; return the object's meta."""
        self.bucket(bucket)
        if not key or len(key.encode("utf-8", "surrogatepass")) > 1024:
            raise S3Error(
                400, "KeyTooLongError", "Your key is too long", f"{bucket}/{key}"
            )
        data_path, meta_path = self._paths(bucket, key)
        partial = f"{data_path}.{threading.get_ident()}.part"
        md5, sha = hashlib.md5(), hashlib.sha256()
        left = size
        with open(partial, "wb") as out:
            while left:
                block = reader.read(min(CHUNK, left))
                if not block:
                    break
                left -= len(block)
                md5.update(block)
                sha.update(block)
                out.write(block)
        if left:
            os.remove(partial)
            raise S3Error(
                400,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the "
                "Content-Length HTTP header.",
            )
        if sha256 and sha256 != sha.hexdigest():
            os.remove(partial)
            raise S3Error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what "
                "was computed.",
            )
        meta = {
            "key": key,
            "size": size,
            "etag": f'"{md5.hexdigest()}"',
            "content_type": content_type or "binary/octet-stream",
            "metadata": metadata,
            "modified": _now().timestamp(),
        }
        with self.lock:
            self.bucket(bucket)
            os.replace(partial, data_path)
            with open(meta_path + ".tmp", "w") as f:
                json.dump(meta, f)
            os.replace(meta_path + ".tmp", meta_path)
            self.buckets[bucket]["objects"][key] = meta
        return meta

    def delete(self, bucket, key):
        with self.lock:
            objects = self.bucket(bucket)["objects"]
            if objects.pop(key, None) is None:
                return
            for path in self._paths(bucket, key):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def list(self, bucket, *, prefix="", delimiter="", start_after="", limit=MAX_KEYS):
        """Return (objects, common prefixes, truncated) after ``start_after``."""
        with self.lock:
            keys = sorted(self.bucket(bucket)["objects"])
            objects = self.buckets[bucket]["objects"]
        contents, prefixes = [], []
        truncated = False
        last_prefix = None
        for key in keys:
            if not key.startswith(prefix) or key <= start_after:
                continue
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    if common == last_prefix:
                        continue
                    if len(contents) + len(prefixes) >= limit:
                        truncated = True
                        break
                    prefixes.append(common)
                    last_prefix = common
                    continue
            if len(contents) + len(prefixes) >= limit:
                truncated = True
                break
            contents.append(objects[key])
        return contents, prefixes, truncated


# --- signature ---------------------------------------------------------------


def _credentials():
    access = os.environ.get("STANDIN_S3_ACCESS_KEY") or os.environ.get(
        "MINIO_ROOT_USER", "minioadmin"
    )
    secret = os.environ.get("STANDIN_S3_SECRET_KEY") or os.environ.get(
        "MINIO_ROOT_PASSWORD", "minioadmin"
    )
    return access, secret


def _canonical_query(raw):
    pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
    encoded = sorted(
        (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
        for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def check_signature(handler, raw_path, raw_query):
    """Refuse a request not signed (SigV4) by this server's access key."""
    access, secret = _credentials()
    header = handler.headers.get("Authorization", "")
    match = AUTH_RE.fullmatch(header.strip())
    if match is None:
        raise S3Error(403, "AccessDenied", "Access Denied.")
    if match["key"] != access:
        raise S3Error(
            403,
            "InvalidAccessKeyId",
            "The Access Key Id you provided does not exist in our records.",
        )
    signed = match["headers"].split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join((handler.headers.get(name) or '').split())}\n"
        for name in signed
    )
    payload = handler.headers.get("x-amz-content-sha256") or UNSIGNED
    request = "\n".join(
        [
            handler.command,
            raw_path,
            _canonical_query(raw_query),
            canonical_headers,
            match["headers"],
            payload,
        ]
    )
    amz_date = handler.headers.get("x-amz-date", "")
    scope = f"{match['date']}/{match['region']}/{match['service']}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(request.encode("utf-8")).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (match["date"], match["region"], match["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        raise S3Error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature "
            "you provided. Check your key and signing method.",
        )
    return payload


# --- requests ----------------------------------------------------------------


def _xml(root, body):
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">{body}</{root}>'
    ).encode()


def _send_xml(handler, status, root, body, headers=None):
    data = _xml(root, body)
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def _send_empty(handler, status, headers=None):
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _send_error(handler, error):
    body = (
        f"<Code>{escape(error.code)}</Code><Message>{escape(str(error))}</Message>"
        f"<Resource>{escape(error.resource)}</Resource>"
        f"<RequestId>{os.urandom(8).hex().upper()}</RequestId>"
    )
    data = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>').encode()
    handler.send_response(error.status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def _object_headers(meta):
    headers = {
        "ETag": meta["etag"],
        "Last-Modified": _http_date(meta["modified"]),
        "Content-Type": meta["content_type"],
        "Accept-Ranges": "bytes",
    }
    for name, value in meta["metadata"].items():
        headers[f"x-amz-meta-{name}"] = value
    return headers


def _list_buckets(store):
    buckets = "".join(
        f"<Bucket><Name>{escape(name)}</Name>"
        f"<CreationDate>{_iso(b['created'])}</CreationDate></Bucket>"
        for name, b in sorted(store.buckets.items())
    )
    return (
        "<Owner><ID>standin</ID><DisplayName>standin</DisplayName></Owner>"
        f"<Buckets>{buckets}</Buckets>"
    )


def _list_objects(store, bucket, query):
    def arg(name, default=""):
        return query.get(name, [default])[0]

    if arg("list-type") != "2":
        raise S3Error(
            501, "NotImplemented", "Only ListObjectsV2 (list-type=2) is served."
        )
    prefix, delimiter = arg("prefix"), arg("delimiter")
    try:
        limit = min(int(arg("max-keys", str(MAX_KEYS))), MAX_KEYS)
    except ValueError:
        raise S3Error(400, "InvalidArgument", "max-keys is not a number") from None
    token = arg("continuation-token")
    start = arg("start-after")
    if token:
        try:
            start = base64.urlsafe_b64decode(token.encode()).decode("utf-8")
        except ValueError:
            raise S3Error(
                400, "InvalidArgument", "The continuation token provided is incorrect"
            ) from None
    url = arg("encoding-type") == "url"

    def out(text):
        return escape(urllib.parse.quote(text, safe="/") if url else text)

    contents, prefixes, truncated = store.list(
        bucket, prefix=prefix, delimiter=delimiter, start_after=start, limit=limit
    )
    body = [
        f"<Name>{escape(bucket)}</Name><Prefix>{out(prefix)}</Prefix>",
        f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
        f"<MaxKeys>{limit}</MaxKeys><IsTruncated>{str(truncated).lower()}"
        "</IsTruncated>",
    ]
    if delimiter:
        body.append(f"<Delimiter>{out(delimiter)}</Delimiter>")
    if url:
        body.append("<EncodingType>url</EncodingType>")
    if token:
        body.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if arg("start-after"):
        body.append(f"<StartAfter>{out(arg('start-after'))}</StartAfter>")
    if truncated:
        last = max([m["key"] for m in contents] + [p for p in prefixes], default=start)
        following = base64.urlsafe_b64encode(last.encode("utf-8")).decode()
        body.append(f"<NextContinuationToken>{following}</NextContinuationToken>")
    for meta in contents:
        body.append(
            f"<Contents><Key>{out(meta['key'])}</Key>"
            f"<LastModified>{_iso(meta['modified'])}</LastModified>"
            f"<ETag>{escape(meta['etag'])}</ETag><Size>{meta['size']}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    for common in prefixes:
        body.append(f"<CommonPrefixes><Prefix>{out(common)}</Prefix></CommonPrefixes>")
    return "".join(body)


def _drain(handler, size):
    while size:
        block = handler.rfile.read(min(CHUNK, size))
        if not block:
            return
        size -= len(block)


def handle(handler, store):
    """Serve one S3 request; the request body is still unread."""
    url = urllib.parse.urlsplit(handler.path)
    raw_path = url.path or "/"
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    size = int(handler.headers.get("Content-Length") or 0)
    bucket, _, key = urllib.parse.unquote(raw_path.lstrip("/")).partition("/")
    method = handler.command
    try:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked" or (
            "aws-chunked" in handler.headers.get("Content-Encoding", "")
        ):
            handler.close_connection = True
            raise S3Error(501, "NotImplemented", "Chunked uploads are not served here.")
        payload = check_signature(handler, raw_path, url.query)
        if method == "PUT" and bucket and key:
            metadata = {
                name[len("x-amz-meta-") :].lower(): value
                for name, value in handler.headers.items()
                if name.lower().startswith("x-amz-meta-")
            }
            digest = payload if re.fullmatch(r"[0-9a-f]{64}", payload) else None
            meta = store.put(
                bucket,
                key,
                handler.rfile,
                size,
                content_type=handler.headers.get("Content-Type"),
                metadata=metadata,
                sha256=digest,
            )
            return _send_empty(handler, 200, {"ETag": meta["etag"]})
        _drain(handler, size)
        if not bucket:
            if method != "GET":
                raise S3Error(405, "MethodNotAllowed", "Method not allowed.")
            return _send_xml(
                handler, 200, "ListAllMyBucketsResult", _list_buckets(store)
            )
        if not key:
            if method == "PUT":
                store.create_bucket(bucket)
                return _send_empty(handler, 200, {"Location": f"/{bucket}"})
            if method == "HEAD":
                store.bucket(bucket)
                return _send_empty(handler, 200)
            if method == "DELETE":
                store.delete_bucket(bucket)
                return _send_empty(handler, 204)
            if method == "GET":
                store.bucket(bucket)
                body = _list_objects(store, bucket, query)
                return _send_xml(handler, 200, "ListBucketResult", body)
            raise S3Error(405, "MethodNotAllowed", "Method not allowed.")
        if method == "DELETE":
            store.delete(bucket, key)
            return _send_empty(handler, 204)
        if method in ("GET", "HEAD"):
            meta, path = store.get(bucket, key)
            handler.send_response(200)
            for name, value in _object_headers(meta).items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(meta["size"]))
            handler.end_headers()
            if method == "GET":
                with open(path, "rb") as f:
                    while True:
                        block = f.read(CHUNK)
                        if not block:
                            break
                        handler.wfile.write(block)
            return None
        raise S3Error(405, "MethodNotAllowed", "Method not allowed.")
    except S3Error as error:
        if method == "PUT":
            handler.close_connection = True
        return _send_error(handler, error)

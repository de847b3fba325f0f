"""Check HTTP exchanges against Qdrant's published OpenAPI 3.0 document.

The spec lives outside the project (``../shared/specs/`` from the repository root)
and is read, never copied. OpenAPI 3.0 schemas are JSON Schema with one important
difference, ``nullable: true``; it is rewritten into JSON Schema's ``null`` type so
a standard Draft 2020-12 validator can check bodies, with ``$ref`` resolved through
a ``referencing`` registry that holds the whole document.
"""

import copy
import functools
import json
from pathlib import Path
from urllib.parse import quote

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["SPEC_PATH", "check_request", "check_response", "operation"]

SPEC_PATH = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "specs"
    / "qdrant-openapi-v1.12.json"
)
SPEC_URI = "urn:qdrant-openapi-v1.12"


def _nullable_to_json_schema(node):
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    return node


@functools.cache
def _spec():
    return json.loads(SPEC_PATH.read_text())


@functools.cache
def _registry():
    contents = _nullable_to_json_schema(copy.deepcopy(_spec()))
    resource = Resource(contents=contents, specification=DRAFT202012)
    return Registry().with_resource(uri=SPEC_URI, resource=resource)


def _pointer(*parts):
    return "/" + "/".join(
        quote(str(p).replace("~", "~0").replace("/", "~1"), safe="") for p in parts
    )


def _validate(pointer_parts, instance):
    schema = {"$ref": SPEC_URI + "#" + _pointer(*pointer_parts)}
    validator = Draft202012Validator(schema, registry=_registry())
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: list(e.absolute_path)
    )
    if errors:
        details = "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in errors[:10]
        )
        raise AssertionError(
            f"{'/'.join(map(str, pointer_parts))} rejects the body:\n{details}"
        )


def operation(path, method):
    """The spec's operation for ``method`` on ``path`` (templated as in the spec)."""
    try:
        return _spec()["paths"][path][method.lower()]
    except KeyError:
        raise AssertionError(
            f"the Qdrant 1.12 spec has no operation {method.upper()} {path}"
        ) from None


def check_request(path, method, body):
    """Assert that a JSON request body matches the operation's requestBody schema."""
    operation(path, method)
    _validate(
        (
            "paths",
            path,
            method.lower(),
            "requestBody",
            "content",
            "application/json",
            "schema",
        ),
        body,
    )


def check_response(path, method, response):
    """Assert that a ``requests`` response is one the spec documents for this operation.

    The status code must be listed (or covered by ``4XX``/``default``), the content type
    must be the documented one, and a JSON body must match its schema. Returns the
    decoded JSON body, or the raw bytes for binary responses.
    """
    responses = operation(path, method)["responses"]
    code = str(response.status_code)
    key = next((k for k in (code, code[0] + "XX", "default") if k in responses), None)
    assert key is not None, f"{method.upper()} {path}: status {code} is not documented"
    content = responses[key].get("content", {})
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in content, (
        f"{method.upper()} {path}: content type {media!r} not in {sorted(content)}"
    )
    if media != "application/json":
        return response.content
    body = response.json()
    _validate(
        ("paths", path, method.lower(), "responses", key, "content", media, "schema"),
        body,
    )
    return body

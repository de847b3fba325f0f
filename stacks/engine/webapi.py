"""A JSON request to a service's HTTP API, sent from a helper container.

Services such as Qdrant answer only on their stack's network. A helper on
that network (``stacks.engine.helpers``) sends the request with ``nc``, so
no HTTP client is needed in the helper image; the answer's status line,
headers and body come back through ``docker exec``.
"""

import json
import re
from dataclasses import dataclass

from .errors import EngineError
from .exec import exec_run

__all__ = ["ApiAnswer", "NoApiAnswer", "api_request"]

# One HTTP/1.0 request: METHOD PATH HOST PORT BODY. A fixed script; every
# value is an argument, and an API key comes in the exec environment
# ($API_KEY, sent as the ``api-key`` header), never on a command line.
_REQUEST_SCRIPT = (
    '{ printf "%s %s HTTP/1.0\\r\\nHost: %s\\r\\n" "$1" "$2" "$3"; '
    '[ -z "$API_KEY" ] || printf "api-key: %s\\r\\n" "$API_KEY"; '
    'printf "Content-Type: application/json\\r\\nContent-Length: %s\\r\\n\\r\\n%s" '
    '"${#5}" "$5"; } | nc "$3" "$4"'
)
_STATUS_RE = re.compile(rb"^HTTP/\d\.\d (\d{3})")


class NoApiAnswer(EngineError):
    """No HTTP answer came back; ``detail`` says what did."""

    def __init__(self, detail):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class ApiAnswer:
    """An HTTP answer: its status, body, and the body's JSON ({} if none)."""

    status: int
    payload: bytes
    document: object

    def text(self, limit=300):
        return self.payload[:limit].decode("utf-8", "replace")


def api_request(client, helper, host, port, method, path, body=None, *, api_key=None):
    """Send ``method path`` with ``body`` as JSON to ``host:port`` from the
    running container ``helper``; return the :class:`ApiAnswer`, whatever its
    status. Raise :class:`NoApiAnswer` when no HTTP answer came back."""
    data = "" if body is None else json.dumps(body)
    result = exec_run(
        client,
        helper,
        ["sh", "-c", _REQUEST_SCRIPT, "sh", method, path, host, str(port), data],
        environment={"API_KEY": api_key} if api_key else None,
    )
    raw = result.stdout
    match = _STATUS_RE.match(raw)
    if not result.ok or match is None:
        detail = result.stderr_text(300) or raw[:300].decode("utf-8", "replace")
        raise NoApiAnswer(detail or f"nc exited with {result.exit_code}")
    payload = raw.partition(b"\r\n\r\n")[2]
    try:
        document = json.loads(payload) if payload.strip() else {}
    except ValueError:
        document = {}
    return ApiAnswer(int(match.group(1)), payload, document)

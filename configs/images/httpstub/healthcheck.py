"""Container healthcheck: GET /healthz on the first port in STANDIN_PORT."""

import os
import sys
import urllib.request

port = os.environ.get("STANDIN_PORT", "8080").split(",")[0].strip() or "8080"
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/healthz",
    # standin.py leaves requests with this agent out of its access log.
    headers={"User-Agent": "standin-healthcheck"},
)
try:
    with urllib.request.urlopen(request, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
    print(exc, file=sys.stderr)
    sys.exit(1)

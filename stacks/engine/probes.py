"""Looking at services from inside their networks.

:func:`resolve_names` asks the Docker DNS what names resolve to *from
inside a container*: a helper joins that container's network namespace
(``network_mode: container:<id>``), so it sees the same embedded resolver,
the same networks and aliases as the service itself, whatever the
service's image holds. :func:`run_probes` runs health probes (PostgreSQL's
``pg_isready``, Redis ``PING``, HTTP, TCP) from a helper attached to a
stack's network, timing each one; its image needs ``pg_isready``,
``redis-cli`` and ``python3`` (the stand-in base image has them).
"""

import json
import time

from docker.errors import APIError, NotFound

from .errors import EngineError, api_error_text
from .helpers import helper_container, helper_image

__all__ = [
    "DEFAULT_PROBE_IMAGE",
    "PROBE_SCRIPT",
    "probe_image",
    "resolve_names",
    "run_probes",
]

DEFAULT_PROBE_IMAGE = "stackportal/base:local"

# Runs inside the probe helper: argv[1] is a JSON list of probes
# {id, kind, host, port, path, timeout}; prints a JSON list of results
# {id, ok, seconds, detail, address}. A fixed program, never built from
# input; the probes travel as one argument, not through a shell.
PROBE_SCRIPT = r"""
import json, socket, subprocess, sys, time, urllib.request

def run(argv, timeout):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).strip()

def probe(p):
    t = float(p.get("timeout") or 5)
    host, port = p["host"], int(p["port"])
    try:
        address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError as exc:
        return False, f"{host} does not resolve: {exc}", ""
    kind = p["kind"]
    if kind == "postgres":
        code, out = run(["pg_isready", "-h", host, "-p", str(port),
                         "-t", str(max(1, int(t)))], t + 2)
        return code == 0, out, address
    if kind == "redis":
        code, out = run(["redis-cli", "-h", host, "-p", str(port), "PING"], t)
        if out.startswith("NOAUTH"):
            return True, "answers, needs a password (" + out + ")", address
        return code == 0 and out == "PONG", out or f"exit {code}", address
    if kind == "http":
        url = f"http://{host}:{port}{p.get('path') or '/'}"
        try:
            with urllib.request.urlopen(url, timeout=t) as answer:
                return 200 <= answer.status < 400, f"HTTP {answer.status}", address
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code} from {url}", address
        except OSError as exc:
            return False, f"{url}: {exc}", address
    with socket.create_connection((host, port), timeout=t):
        return True, f"TCP {port} open", address

results = []
for p in json.loads(sys.argv[1]):
    start = time.monotonic()
    try:
        ok, detail, address = probe(p)
    except Exception as exc:
        ok, detail, address = False, f"{type(exc).__name__}: {exc}", ""
    results.append({"id": p["id"], "ok": bool(ok), "detail": str(detail)[-400:],
                    "address": address,
                    "seconds": round(time.monotonic() - start, 4)})
print(json.dumps(results))
"""


def probe_image(environment):
    """Return the image health probes run in (``settings.probe_image``)."""
    return (getattr(environment, "settings", None) or {}).get(
        "probe_image", DEFAULT_PROBE_IMAGE
    )


def _exec(client, cid, argv):
    created = client.api.exec_create(cid, argv, stdout=True, stderr=True)
    output = client.api.exec_start(created["Id"])
    return client.api.exec_inspect(created["Id"]).get("ExitCode"), output.decode(
        "utf-8", "replace"
    )


def _nslookup_addresses(text):
    """Return the addresses ``nslookup`` (BusyBox) or ``getent`` printed."""
    found, answer = [], False
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Name:":
            answer = True
        elif answer and words[0].startswith("Address"):
            found.append(words[-1])
        elif not line.startswith(("Server", "Address", "Non-auth", "**")):
            # getent hosts: "10.0.0.2   name"
            found.append(words[0])
    return sorted(set(found))


def resolve_names(client, container_id, names, *, environment, owner="", timeout=60):
    """Return ``{name: (addresses, error)}`` as resolved inside a container.

    A helper shares the container's network namespace (and so its resolver
    and networks) and asks for each name with ``nslookup``, falling back
    to ``getent hosts`` in images without it. An empty address list with
    an error means the name does not resolve there.
    """
    results = {}
    with helper_container(
        client,
        environment=environment,
        purpose="network.resolve",
        owner=owner,
        image=helper_image(environment),
        command=["sleep", str(int(timeout))],
        network_mode=f"container:{container_id}",
        init=True,
    ) as cid:
        try:
            client.api.start(cid)
        except (APIError, NotFound) as exc:
            raise EngineError(
                f"Cannot look inside container {container_id[:12]}: "
                f"{api_error_text(exc)}"
            ) from exc
        lookup = ["nslookup"]
        for name in names:
            code, text = _exec(client, cid, [*lookup, name])
            if code in (126, 127) and lookup == ["nslookup"]:
                lookup = ["getent", "hosts"]
                code, text = _exec(client, cid, [*lookup, name])
            addresses = _nslookup_addresses(text) if code == 0 else []
            error = (
                "" if addresses else (text.strip().splitlines() or ["no answer"])[-1]
            )
            results[name] = (addresses, error)
    return results


def run_probes(client, network, probes, *, environment, owner="", timeout=120):
    """Run ``probes`` from a helper on Docker network ``network``.

    ``probes`` are dicts ``{id, kind, host, port, path, timeout}`` with
    kind ``postgres``, ``redis``, ``http`` or ``tcp``. Returns
    ``(results, seconds)``: one dict per probe ``{id, ok, seconds, detail,
    address}`` and the helper's whole run time.
    """
    started = time.monotonic()
    image = probe_image(environment)
    with helper_container(
        client,
        environment=environment,
        purpose="network.health",
        owner=owner,
        image=image,
        command=["python3", "-c", PROBE_SCRIPT, json.dumps(list(probes))],
        network_mode=network,
    ) as cid:
        try:
            client.api.start(cid)
            status = client.api.wait(cid, timeout=timeout)
        except APIError as exc:
            raise EngineError(
                f"Health probes on network {network} could not run in {image}: "
                f"{api_error_text(exc)}"
            ) from exc
        except Exception as exc:  # noqa: BLE001  (requests' read timeout)
            raise EngineError(
                f"Health probes on network {network} did not finish within "
                f"{timeout} s: {exc}"
            ) from exc
        stdout = client.api.logs(cid, stdout=True, stderr=False).decode(
            "utf-8", "replace"
        )
        stderr = client.api.logs(cid, stdout=False, stderr=True).decode(
            "utf-8", "replace"
        )
    try:
        results = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise EngineError(
            f"Health probes on network {network} in {image} exited with "
            f"{status.get('StatusCode')}: {(stderr or stdout).strip()[-300:]}"
        ) from None
    return results, round(time.monotonic() - started, 3)

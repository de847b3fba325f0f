"""Container log lines per second delivered to a WebSocket client, against
``docker logs -f -t`` over the same kind of container.

Each round starts a fresh busybox container (init=True, bounded) that waits
3 s and then writes ``seq 1 N`` as fast as it can, attaches the reader
before the first line, and times first line to N-th line:

- ``docker logs -f -t`` (the CLI, reading its stdout);
- the portal: a daphne process serving ``portal.asgi`` and a WebSocket
  client on ``ws/logs/<env>/<stack>/<service>/?tail=0`` that acknowledges
  every batch as a browser does.

Both readers run in every round, in alternating order, and the round's
ratio is the WebSocket's rate over the CLI's in that round (the machine's
load changes between rounds). Targets: a ratio of at least 0.9 and no line
dropped for this client, which acknowledges each batch as soon as it has
counted its lines.

The client is kept cheap, since it shares the CPUs with the server: it
reads the frames with asyncio streams, counts a batch's lines in the raw
frame (``"],["`` separates two lines and cannot occur inside a JSON string,
where a quote is escaped) and decodes JSON only for the other, rare
messages (``dropped``). Acknowledgements are the browser's: one
``{"type": "ack", "seq": n}`` per batch.

Uses a throw-away SQLite database and the local Redis (channel layer prefix
``bench-logs``); removes its containers at the end. Run from the
repository root:

    python bench/bench_container_logs.py [--lines 300000] [--rounds 3]
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = Path(tempfile.gettempdir()) / f"bench-logs-{os.getpid()}.sqlite3"
SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "DATABASE_URL": f"sqlite:///{DB}",
    "CHANNELS_PREFIX": "bench-logs",
    # redis-py 8 reads with a 5 s socket timeout by default, the same as
    # channels_redis's blocking BZPOPMIN: an idle consumer's receive then
    # fails with "Timeout reading from". A longer timeout avoids the race.
    "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").split("?")[0]
    + "?socket_timeout=30",
    "LOG_LEVEL": "WARNING",
}
os.environ.update(SERVER_ENV)

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from portal.models import RoleAssignment  # noqa: E402
from stacks.models import Environment, Service, Stack  # noqa: E402

BUSYBOX = "stackportal/busybox:local"
BENCH_LABEL = "portal.bench"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def producer(engine, env, stack, service, run, lines):
    project = env.project_name(stack)
    return engine.containers.run(
        BUSYBOX,
        ["sh", "-c", f"sleep 3; seq 1 {lines}; sleep 600"],
        name=f"{project}-{service.name}-{uuid.uuid4().hex[:6]}",
        detach=True,
        init=True,
        labels={
            "com.docker.compose.project": project,
            "com.docker.compose.service": service.name,
            "portal.managed": "true",
            "portal.environment": env.name,
            "portal.stack": stack.name,
            "portal.service": service.name,
            BENCH_LABEL: run,
        },
    )


# A WebSocket round's ratio to the CLI's should be at least this.
RATE_TARGET = 0.9


def cpu_seconds(pid):
    """Return the user + system CPU seconds process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def docker_cli_round(container, lines):
    reader = subprocess.Popen(
        ["docker", "logs", "-f", "-t", container.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    count, first = 0, None
    try:
        while count < lines:
            chunk = reader.stdout.read1(1 << 16)
            if not chunk:
                break
            if first is None:
                first = time.perf_counter()
            count += chunk.count(b"\n")
        last = time.perf_counter()
    finally:
        reader.kill()
        reader.wait()
    return {"lines": count, "seconds": last - first, "frames": None, "dropped": 0}


class WebSocket:
    """A minimal RFC 6455 client on asyncio streams: enough for this bench.

    (autobahn's asyncio flavour cannot be used here: importing Django with
    daphne installed already selected autobahn's Twisted flavour.)
    """

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port, path, cookie):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")
        return cls(reader, writer)

    async def receive(self):
        """Return the next text message (bytes); raise EOFError on close."""
        parts = []
        while True:
            b1, b2 = await self.reader.readexactly(2)
            length = b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            opcode = b1 & 0x0F
            if opcode == 8:
                raise EOFError(payload[2:].decode(errors="replace"))
            if opcode == 9:
                self._send(0xA, payload)
                continue
            parts.append(payload)
            if b1 & 0x80:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def send_text(self, text):
        self._send(0x1, text.encode())

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def close(self):
        self._send(0x8, struct.pack("!H", 1000))
        await self.writer.drain()
        self.writer.close()


LINES_PREFIX = b'{"type":"lines","seq":'


async def websocket_round(port, path, cookie, lines):
    ws = await WebSocket.connect(port, path, cookie)
    count = frames = dropped = 0
    first = last = None
    cpu = time.process_time()
    try:
        while count + dropped < lines:
            message = await asyncio.wait_for(ws.receive(), 60)
            if message.startswith(LINES_PREFIX):
                if first is None:
                    first = time.perf_counter()
                # The batch's seq, and its lines counted without decoding.
                seq = message[len(LINES_PREFIX) : message.index(b",", 22)]
                if b'"lines":[]' not in message:
                    count += message.count(b'"],["') + 1
                frames += 1
                ws.send_text(f'{{"type":"ack","seq":{int(seq)}}}')
                continue
            event = json.loads(message)
            if event["type"] == "dropped":
                dropped += event["count"]
        last = time.perf_counter()
    finally:
        await ws.close()
    return {
        "lines": count,
        "seconds": last - first,
        "frames": frames,
        "dropped": dropped,
        "client_cpu": time.process_time() - cpu,
    }


def start_server(port, log_path):
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "portal.asgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, **SERVER_ENV},
        stdout=open(log_path, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(Path(log_path).read_text()[-2000:]) from None
            time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    engine = docker.from_env(timeout=120)
    setup_test_environment()
    call_command("migrate", verbosity=0)
    env = Environment.objects.create(name=f"benchlogs-{run}")
    stack = Stack.objects.create(name="flood")
    service = Service.objects.create(stack=stack, name="seq", image=BUSYBOX)
    user = get_user_model().objects.create_user("bench-viewer", password="x")
    RoleAssignment.objects.create(user=user, environment=env, role="viewer")
    http = Client()
    http.force_login(user)
    cookie = f"sessionid={http.cookies['sessionid'].value}"
    connection.close()

    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"bench-logs-daphne-{run}.log"
    server = start_server(port, log_path)
    path = f"/ws/logs/{env.name}/{stack.name}/{service.name}/?tail=0"
    rounds = []
    try:
        for round_no in range(1, args.rounds + 1):
            result = {}
            # Alternate which reader goes first.
            order = ["cli", "ws"] if round_no % 2 else ["ws", "cli"]
            for reader in order:
                container = producer(engine, env, stack, service, run, args.lines)
                if reader == "cli":
                    result["cli"] = docker_cli_round(container, args.lines)
                else:
                    cpu = cpu_seconds(server.pid)
                    result["ws"] = asyncio.run(
                        websocket_round(port, path, cookie, args.lines)
                    )
                    result["ws"]["server_cpu"] = cpu_seconds(server.pid) - cpu
                container.remove(force=True, v=True)
            rounds.append(result)
    finally:
        server.terminate()
        server.wait(timeout=10)
        for c in engine.containers.list(
            all=True, filters={"label": f"{BENCH_LABEL}={run}"}
        ):
            c.remove(force=True, v=True)
        engine.close()
        # WAL mode keeps two files next to the database.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DB}{suffix}").unlink(missing_ok=True)
    report(rounds, args)


def report(rounds, args):
    print(
        f"{args.lines:,} lines per round, producer `seq` in busybox, json-file "
        f"driver, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| round | docker logs -f lines/s | WebSocket lines/s | ratio | "
        "lines received | dropped | lines/frame | daphne CPU s | client CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for round_no, result in enumerate(rounds, 1):
        cli, ws = result["cli"], result["ws"]
        cli_rate = cli["lines"] / cli["seconds"]
        ws_rate = ws["lines"] / ws["seconds"]
        ratios.append(ws_rate / cli_rate)
        print(
            f"| {round_no} | {cli_rate:,.0f} | {ws_rate:,.0f} | "
            f"{ratios[-1]:.2f} | {ws['lines']:,} | {ws['dropped']:,} | "
            f"{ws['lines'] / ws['frames']:.0f} | {ws['server_cpu']:.2f} | "
            f"{ws['client_cpu']:.2f} |"
        )
    ordered = sorted(ratios)
    median = ordered[len(ordered) // 2]
    lost = sum(args.lines - r["ws"]["lines"] for r in rounds)
    dropped = sum(r["ws"]["dropped"] for r in rounds)
    print()
    print(
        f"ratio WebSocket / docker logs -f: median {median:.2f} "
        f"(min {ordered[0]:.2f}, max {ordered[-1]:.2f}); "
        f"lines dropped {dropped:,}, missing {lost:,}"
    )
    met = median >= RATE_TARGET and not dropped and not lost
    print(
        f"target: ratio >= {RATE_TARGET} and no line dropped: "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()

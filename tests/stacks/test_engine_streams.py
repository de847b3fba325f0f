"""Streams of the engine layer against the real engine: logs read in bulk,
command output and input, volumes as tar, helper containers.

The data paths that backups and restores build on: nothing here may hold a
whole stream in memory, and a helper left by a crash must be findable.
"""

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stacks import engine
from stacks.engine.streams import Dechunker, Demuxer
from tests.conftest import RUN_ID, TEST_LABEL
from tests.stacks.live import wait_for

BUSYBOX = "stackportal/busybox:local"
ROOT = Path(__file__).resolve().parent.parent.parent


def frame(kind, payload):
    return struct.pack(">BxxxL", kind, len(payload)) + payload


# --- the demultiplexer, on its own --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=40
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30),
)
def test_demuxer_splits_frames_whatever_the_chunk_boundaries(frames, cuts):
    """Fed in arbitrary pieces, the payloads come out whole, per stream and
    in stream order, and nothing is left over at the end."""
    stream = b"".join(frame(kind, payload) for kind, payload in frames)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    demux, out, err = Demuxer(), b"", b""
    for piece in pieces:
        o, e = demux.feed(piece)
        out, err = out + o, err + e
    assert out == b"".join(p for k, p in frames if k == 1)
    assert err == b"".join(p for k, p in frames if k == 2)
    assert demux.pending == 0

    demux, both = Demuxer(), b""
    for piece in pieces:
        both += demux.payloads(piece)
    assert both == b"".join(p for _, p in frames)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=40),
    extensions=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30),
)
def test_dechunker_decodes_whatever_the_read_boundaries(chunks, extensions, cuts):
    """Fed an HTTP chunked body in arbitrary pieces, the body comes out
    whole and in order; the last chunk ends it and what follows is left."""
    ext = b";name=value" if extensions else b""
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks)
    stream = body + b"0\r\n\r\nNEXT RESPONSE"
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    dechunk, out = Dechunker(), b""
    for piece in pieces:
        out += dechunk.feed(piece)
    assert out == b"".join(chunks)
    assert dechunk.done


@pytest.mark.parametrize("size", [b"zz", b"-3", b""])
def test_dechunker_refuses_a_size_that_is_not_hex(size):
    with pytest.raises(ValueError):
        Dechunker().feed(size + b"\r\nabc\r\n")


# --- on the real engine ---------------------------------------------------------


@pytest.fixture
def labelled(settings):
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}


@pytest.fixture
def box(docker_client, docker_labels):
    """Return a running busybox container (sleeps, stops on a signal)."""

    def make(**options):
        container = docker_client.containers.run(
            BUSYBOX,
            ["sleep", "600"],
            labels=docker_labels,
            detach=True,
            init=True,
            **options,
        )
        wait_for(lambda: container.reload() or container.status == "running")
        return container

    return make


@pytest.mark.docker
def test_log_stream_reads_what_docker_logs_returns(docker_client, box):
    """Lines split across chunks, stdout and stderr, long lines and non-ASCII
    text come out exactly as the engine has them, in order."""
    script = (
        "i=0; while [ $i -lt 300 ]; do echo out-$i; echo err-$i >&2; "
        "i=$((i+1)); done; printf 'caf\\303\\251 %0500d\\n' 7; sleep 600"
    )
    container = docker_client.containers.run(
        BUSYBOX,
        ["sh", "-c", script],
        labels={TEST_LABEL: RUN_ID},
        detach=True,
        init=True,
    )
    wait_for(lambda: b"caf" in container.logs(), what="the last line")
    expected = container.logs(timestamps=True).decode().splitlines()
    # A tiny chunk size puts frame and line boundaries everywhere.
    chunks = list(
        engine.LogStream(docker_client, container.id, tail="all", chunk_size=7)
    )
    got = [line for chunk in chunks for line in chunk]
    assert got == expected
    assert len(got) == 601 and len(chunks) > 100
    # stdout and stderr are separate pipes: the long line is somewhere
    # among the last ones, whole.
    (long_line,) = [line for line in got if "caf" in line]
    ts, text = engine.split_timestamp(long_line)
    assert ts.endswith("Z") and text == "café " + "0" * 499 + "7"


@pytest.mark.docker
def test_log_stream_of_a_tty_container(docker_client):
    container = docker_client.containers.run(
        BUSYBOX,
        ["sh", "-c", "echo one; echo two; sleep 600"],
        labels={TEST_LABEL: RUN_ID},
        detach=True,
        init=True,
        tty=True,
    )
    wait_for(lambda: b"two" in container.logs(), what="two lines")
    lines = engine.read_log(docker_client, container.id, timestamps=False)
    assert lines == ["one", "two"]


@pytest.mark.docker
def test_log_stream_follow_ends_on_close(docker_client, box):
    """close() from another thread ends a follow that is waiting for lines."""
    import threading

    container = box()
    stream = engine.LogStream(docker_client, container.id, follow=True, tail=0)
    result = []
    reader = threading.Thread(target=lambda: result.extend(stream))
    reader.start()
    time.sleep(0.3)
    stream.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert result == []


@pytest.mark.docker
def test_exec_stream_gives_stdout_exit_code_and_stderr(docker_client, box):
    container = box()
    stream = engine.exec_stream(
        docker_client,
        container.id,
        ["sh", "-c", "seq 1 20000; echo broken >&2; exit 3"],
    )
    with stream:
        out = b"".join(stream)
    assert out == "".join(f"{i}\n" for i in range(1, 20001)).encode()
    assert stream.result.exit_code == 3
    assert stream.result.stderr_text() == "broken"
    assert not stream.result.ok


@pytest.mark.docker
def test_exec_stream_feeds_stdin_in_chunks(docker_client, box):
    """A command reads a stream written to its standard input (a restore)."""
    container = box()
    chunk = bytes(range(256)) * 4096  # 1 MiB
    stream = engine.exec_stream(
        docker_client,
        container.id,
        ["sh", "-c", "cat > /tmp/in; md5sum /tmp/in; wc -c < /tmp/in"],
        stdin=(chunk for _ in range(10)),
    )
    with stream:
        out = b"".join(stream).decode().split()
    import hashlib

    assert out[0] == hashlib.md5(chunk * 10).hexdigest()
    assert out[1:] == ["/tmp/in", str(10 * len(chunk))]
    assert stream.result.exit_code == 0


@pytest.mark.docker
def test_exec_run_refuses_output_beyond_its_limit(docker_client, box):
    container = box()
    result = engine.exec_run(docker_client, container.id, ["echo", "small"])
    assert (result.exit_code, result.stdout) == (0, b"small\n")
    with pytest.raises(engine.EngineError, match="wrote more than 1000 bytes"):
        engine.exec_run(docker_client, container.id, ["seq", "1", "5000"], limit=1000)


@pytest.mark.docker
def test_exec_in_a_missing_container_is_an_engine_error(docker_client):
    with pytest.raises(engine.EngineError, match="not found for pg_dump"):
        engine.exec_stream(docker_client, "0" * 64, ["pg_dump"])


STREAM_GIGABYTE = """
import os, sys, django
django.setup()
from django.conf import settings
from stacks import engine

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

client = engine.client_for(type("E", (), {"docker_host": "unix:///var/run/docker.sock",
                                           "name": "t", "settings": {}})())
size = 1 << 30
total = 0
engine.exec_run(client, sys.argv[1], ["true"])  # warm up the client and imports
before = rss("VmRSS:")
stream = engine.exec_stream(client, sys.argv[1], ["head", "-c", str(size), "/dev/zero"])
with stream:
    for chunk in stream:
        total += len(chunk)
print(json.dumps({"bytes": total, "exit": stream.result.exit_code,
                  "rss_before": before, "peak": rss("VmHWM:")}))
"""


@pytest.mark.docker
@pytest.mark.slow
def test_exec_stream_of_a_gigabyte_keeps_memory_flat(docker_client, box):
    """1 GiB of stdout passes through a worker-like process whose peak
    resident memory grows by a few megabytes, not by the gigabyte."""
    container = box()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    script = "import json\n" + textwrap.dedent(STREAM_GIGABYTE)
    done = subprocess.run(
        [sys.executable, "-c", script, container.id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bytes"] == 1 << 30
    assert report["exit"] == 0
    growth = report["peak"] - report["rss_before"]
    assert growth < 32 * 1024 * 1024, f"peak grew by {growth / 2**20:.1f} MiB"


# --- helpers and volumes ----------------------------------------------------------


@pytest.fixture
def volume(docker_client, docker_labels):
    def make():
        return docker_client.volumes.create(
            name=f"t{RUN_ID}-{time.monotonic_ns()}", labels=docker_labels
        ).name

    return make


def tar_of(files):
    """Return a tar of ``{path: (bytes, mode, uid)}`` under ``volume/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, (data, mode, uid) in files.items():
            info = tarfile.TarInfo(f"volume/{path}")
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.docker
def test_volume_round_trip_through_tar_streams(docker_client, volume, labelled):
    """write_volume unpacks a tar stream into a volume and read_volume
    streams it back: contents, modes and owners survive."""
    env = type("E", (), {"name": f"t{RUN_ID}", "settings": {}})()
    files = {
        "models/weights.bin": (os.urandom(3 * 1024 * 1024), 0o640, 101),
        "models/config.json": (b'{"layers": 2}', 0o644, 0),
        "notes.txt": ("naïve\n".encode(), 0o600, 999),
    }
    data = tar_of(files)
    source = volume()
    engine.write_volume(
        docker_client,
        source,
        (data[i : i + 65536] for i in range(0, len(data), 65536)),
        environment=env,
    )
    chunks = list(engine.read_volume(docker_client, source, environment=env))
    assert len(chunks) > 1  # streamed, not one buffer
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert set(members) == {f"volume/{p}" for p in files}
        for path, (content, mode, uid) in files.items():
            member = members[f"volume/{path}"]
            assert tar.extractfile(member).read() == content
            assert (member.mode & 0o777, member.uid) == (mode, uid)
    assert engine.list_helpers(docker_client, environment=env) == []


@pytest.mark.docker
def test_read_volume_mounts_it_read_only(docker_client, volume, labelled):
    env = type("E", (), {"name": f"t{RUN_ID}", "settings": {}})()
    source = volume()
    engine.write_volume(
        docker_client, source, [tar_of({"a": (b"x", 0o644, 0)})], environment=env
    )
    stream = engine.read_volume(docker_client, source, environment=env, owner="op-1")
    next(stream)
    (helper,) = engine.list_helpers(docker_client, purpose="volume.read", owner="op-1")
    mounts = docker_client.api.inspect_container(helper["Id"])["Mounts"]
    assert [(m["Name"], m["RW"]) for m in mounts] == [(source, False)]
    assert helper["Labels"]["portal.environment"] == env.name
    stream.close()
    assert engine.list_helpers(docker_client, owner="op-1") == []


@pytest.mark.docker
def test_read_of_a_missing_volume_names_it(docker_client, labelled):
    env = type("E", (), {"name": f"t{RUN_ID}", "settings": {}})()
    with pytest.raises(engine.EngineError, match="Volume no-such-vol-x does not exist"):
        list(engine.read_volume(docker_client, "no-such-vol-x", environment=env))


CRASH_IN_HELPER = """
import os, signal, sys, django
django.setup()
from django.conf import settings
settings.PORTAL_EXTRA_LABELS = {sys.argv[2]: sys.argv[3]}
from stacks import engine
env = type("E", (), {"docker_host": "unix:///var/run/docker.sock", "name": sys.argv[1],
                     "settings": {}})()
client = engine.client_for(env)
with engine.helper_container(client, environment=env, purpose="crash.test",
                             owner="op-crash", command=["sleep", "600"]) as cid:
    client.api.start(cid)
    print(cid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.docker
def test_helper_left_by_a_killed_process_is_found_and_removed(docker_client):
    """A process SIGKILLed inside a helper block leaves the helper running;
    its labels find it, and remove_helpers removes exactly it."""
    name = f"t{RUN_ID}"
    done = subprocess.run(
        [sys.executable, "-c", CRASH_IN_HELPER, name, TEST_LABEL, RUN_ID],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr[-2000:]
    cid = done.stdout.strip()
    (left,) = engine.list_helpers(docker_client, purpose="crash.test", environment=name)
    assert left["Id"] == cid and left["State"] == "running"
    assert left["Labels"]["portal.helper.owner"] == "op-crash"
    assert (
        engine.remove_helpers(docker_client, purpose="crash.test", older_than=3600)
        == []
    )
    removed = engine.remove_helpers(
        docker_client, purpose="crash.test", environment=name
    )
    assert len(removed) == 1
    assert (
        engine.list_helpers(docker_client, purpose="crash.test", environment=name) == []
    )

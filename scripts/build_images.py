#!/usr/bin/env python3
"""Build the locally made stand-in images (no registry can be reached here).

1. ``stackportal/base:<hash>``: a Debian bookworm rootfs from debootstrap with
   PostgreSQL 15, Redis 7 and Python 3, slimmed and imported as one layer.
2. ``stackportal/<name>:<hash>`` for each context in configs/images/<name>/, built
   with docker-py (legacy builder) on top of the base, and retagged
   ``stackportal/<name>:local``, the tag the stack configs refer to.

Tags are content hashes, so an unchanged input is never rebuilt and a changed
Dockerfile rebuilds only its own image. Needs root (debootstrap) and a running engine.

Usage: build_images.py [--force] [name ...]
"""

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
from docker.utils.build import exclude_paths

__all__ = [
    "BASE_PACKAGES",
    "IMAGES",
    "LOCAL_TAG",
    "build_all",
    "build_base",
    "build_image",
]

ROOT = Path(__file__).resolve().parent.parent
CONTEXTS = ROOT / "configs" / "images"
STATE = ROOT / ".state"
REPOSITORY = "stackportal"
LOCAL_TAG = "local"
IMAGES = ["postgres", "redis", "httpstub", "busybox", "restic"]

SUITE = "bookworm"
BASE_PACKAGES = ["postgresql-15", "redis-server", "python3", "procps"]
# Bump when the recipe below changes in a way the package list does not show.
BASE_RECIPE = "minbase-slim-v1"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Left out of the imported rootfs: caches, docs, and PostgreSQL's optional LLVM JIT
# (with llvmjit.so absent PostgreSQL runs without JIT; saves about 130 MB).
SLIM_EXCLUDES = [
    "./var/cache/apt/archives/*.deb",
    "./var/cache/apt/*.bin",
    "./var/lib/apt/lists/*_*",
    "./usr/share/doc/*",
    "./usr/share/man/*",
    "./usr/share/locale/*",
    "./usr/share/info/*",
    "./usr/lib/postgresql/15/lib/llvmjit*",
    "./usr/lib/postgresql/15/lib/bitcode",
    "./usr/lib/*/libLLVM-*.so*",
    "./usr/lib/*/libz3.so*",
]
# Host files copied into a context before hashing (kept out of git, see .gitignore),
# with the Debian package that provides each.
HOST_FILES = {
    "busybox": {"busybox": (Path("/bin/busybox"), "busybox-static")},
    "restic": {"restic": (Path("/usr/bin/restic"), "restic")},
}


class BuildFailed(Exception):
    """An image could not be built; the message says why."""


def _short(digest):
    return digest.hexdigest()[:12]


def _tag_exists(client, tag):
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _drop_superseded(client, repository, current):
    """Untag older hash tags of a repository after a build so they do not pile up.

    An image a container still uses keeps its tag (the engine refuses with a conflict).
    """
    keep = {current, f"{repository}:{LOCAL_TAG}"}
    for image in client.images.list(name=repository):
        for tag in set(image.tags) - keep:
            try:
                client.images.remove(tag)
            except docker.errors.APIError:
                pass


def base_tag():
    digest = hashlib.sha256()
    for part in (BASE_RECIPE, SUITE, ",".join(BASE_PACKAGES), *SLIM_EXCLUDES):
        digest.update(part.encode() + b"\0")
    return f"{REPOSITORY}/base:{_short(digest)}"


def debian_mirror():
    """The first Debian archive URI this machine's apt uses, else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[1]:
                return fields[1]
    return DEFAULT_MIRROR


def build_base(client, log=print):
    """Debootstrap, slim and import the base image unless its tag exists; return it."""
    tag = base_tag()
    started = time.monotonic()
    if _tag_exists(client, tag):
        log(f"base      {tag:34} cached")
        return tag
    for tool in ("debootstrap", "tar"):
        if shutil.which(tool) is None:
            raise BuildFailed(f"{tool} is not installed (scripts/setup.sh installs it)")
    if os.geteuid() != 0:
        raise BuildFailed("building the base image runs debootstrap and needs root")
    STATE.mkdir(exist_ok=True)
    rootfs = STATE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    debootstrap_log = STATE / "debootstrap.log"
    try:
        with open(debootstrap_log, "wb") as out:
            result = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(BASE_PACKAGES),
                    SUITE,
                    str(rootfs),
                    debian_mirror(),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(
                debootstrap_log.read_text(errors="replace").splitlines()[-15:]
            )
            raise BuildFailed(
                f"debootstrap failed (exit {result.returncode}), "
                f"end of {debootstrap_log}:\n{tail}"
            )
        tar_cmd = ["tar", "-C", str(rootfs), "--numeric-owner"]
        tar_cmd += [f"--exclude={pattern}" for pattern in SLIM_EXCLUDES]
        tar_cmd += ["-c", "."]
        repository, _, version = tag.partition(":")
        tar = subprocess.Popen(tar_cmd, stdout=subprocess.PIPE)
        try:
            # A generator makes requests send the tar chunked: no second copy on disk.
            chunks = iter(lambda: tar.stdout.read(1 << 20), b"")
            client.api.import_image(
                src=chunks, repository=repository, tag=version, stream_src=True
            )
        finally:
            tar.stdout.close()  # on an import error this ends tar with SIGPIPE
            returncode = tar.wait()
        if returncode != 0:
            raise BuildFailed(f"tar of {rootfs} failed (exit {returncode})")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    if not _tag_exists(client, tag):
        raise BuildFailed(f"docker import did not produce {tag}")
    client.images.get(tag).tag(f"{REPOSITORY}/base", LOCAL_TAG)
    _drop_superseded(client, f"{REPOSITORY}/base", tag)
    log(f"base      {tag:34} built  {time.monotonic() - started:6.1f}s")
    return tag


def _uses_base(context):
    return any(
        line.strip().startswith("ARG BASE")
        for line in (context / "Dockerfile").read_text().splitlines()
    )


def _context_files(context):
    """Files docker-py sends as build context: all that .dockerignore leaves in."""
    ignore = context / ".dockerignore"
    patterns = []
    if ignore.exists():
        patterns = [
            line.strip()
            for line in ignore.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return sorted(
        p
        for p in (context / rel for rel in exclude_paths(str(context), patterns))
        if p.is_file()
    )


def image_tag(name, base):
    """Content hash of a build context (paths, executable bits, bytes) and its base.

    Only the executable bit counts, as in git, so checkouts made under different
    umasks hash alike.
    """
    context = CONTEXTS / name
    digest = hashlib.sha256()
    if _uses_base(context):
        digest.update(base.encode() + b"\0")
    for path in _context_files(context):
        rel = path.relative_to(context).as_posix()
        executable = bool(path.stat().st_mode & 0o111)
        digest.update(f"{rel}\0{'755' if executable else '644'}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{REPOSITORY}/{name}:{_short(digest)}"


def _copy_host_files(name):
    for rel, (source, package) in HOST_FILES.get(name, {}).items():
        if not source.exists():
            raise BuildFailed(f"{source} is missing (apt-get install {package})")
        target = CONTEXTS / name / rel
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
        target.chmod(0o755)


def build_image(client, name, base, log=print, force=False):
    """Build configs/images/<name> unless its hash tag exists; point :local at it."""
    _copy_host_files(name)
    tag = image_tag(name, base)
    started = time.monotonic()
    if force or not _tag_exists(client, tag):
        buildargs = {"BASE": base} if _uses_base(CONTEXTS / name) else {}
        try:
            client.images.build(
                path=str(CONTEXTS / name),
                tag=tag,
                buildargs=buildargs,
                rm=True,
                forcerm=True,
                pull=False,
                labels={
                    "org.opencontainers.image.title": f"stackportal {name} stand-in"
                },
            )
        except docker.errors.BuildError as exc:
            output = "".join(
                chunk.get("stream", "") or chunk.get("error", "")
                for chunk in exc.build_log
            )
            raise BuildFailed(
                f"building {tag} failed: {exc.msg}\n{output[-2000:]}"
            ) from exc
        client.images.get(tag).tag(f"{REPOSITORY}/{name}", LOCAL_TAG)
        _drop_superseded(client, f"{REPOSITORY}/{name}", tag)
        action = "built "
    else:
        client.images.get(tag).tag(f"{REPOSITORY}/{name}", LOCAL_TAG)
        action = "cached"
    log(f"{name:9} {tag:34} {action} {time.monotonic() - started:6.1f}s")
    return tag


def build_all(client, names=None, log=print, force=False):
    """Build the base and the named images (default: all). Returns {name: hash tag}.

    Holds a lock under .state/ so concurrent callers (setup and a test run) do not
    race on debootstrap or on the same tags.
    """
    STATE.mkdir(exist_ok=True)
    with open(STATE / "build_images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = build_base(client, log=log)
        return {
            name: build_image(client, name, base, log=log, force=force)
            for name in (names or IMAGES)
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"images to build (default: all of {', '.join(IMAGES)})",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild images even when cached"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(IMAGES))
    if unknown:
        parser.error(f"unknown image(s): {', '.join(unknown)}")
    try:
        # Imports and builds can outlast docker-py's default 60 s read timeout.
        client = docker.from_env(timeout=900)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"build_images: cannot reach the Docker engine: {exc}", file=sys.stderr)
        return 1
    try:
        build_all(client, args.names or None, force=args.force)
    except (BuildFailed, docker.errors.DockerException, OSError) as exc:
        print(f"build_images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where each environment's repository of a storage tier is, and how to open it.

A tier's location and credentials may hold ``${VAR}`` references; they are
resolved from the environment's own variables
(:func:`stacks.secrets.environ_for`), so environments sharing one worker
keep their repositories apart and secrets stay out of the database:

=============  ==============================================================
kind           repository of environment ``<env>``
=============  ==============================================================
filesystem     ``<path>/<env>`` (a relative path is inside the project)
nfs            the same, on an NFS mount
sftp           ``sftp:user@host:/path/<env>``; ssh with the tier's ``port``,
               ``identity_file`` and ``known_hosts``
s3             ``s3:<endpoint>/<bucket>/<env>`` with ``access_key`` and
               ``secret_key``
tape           no repository: ``<device>`` receives archives of snapshots
=============  ==============================================================

The repository password is the tier's ``password`` (default
``${BACKUP_REPOSITORY_PASSWORD}``).
"""

import shlex
from pathlib import Path

from django.conf import settings

from stacks.secrets import MissingSecret, environ_for, resolve, sources_hint

from .choices import TierKind
from .restic import Repository, ResticError

__all__ = [
    "DEFAULT_PASSWORD",
    "BackupError",
    "local_path",
    "repository",
    "snapshot_host",
    "tape_path",
]

DEFAULT_PASSWORD = "${BACKUP_REPOSITORY_PASSWORD}"


class BackupError(Exception):
    """An expected failure of a backup step; the message says why."""


def snapshot_host(environment):
    """Return the host name snapshots of ``environment`` are made under.

    Fixed per environment (not the worker's name) so restic finds the
    previous snapshot of the same data as the parent whichever worker ran.
    """
    return f"portal-{environment.name}"


def _value(tier, environment, environ, text, what):
    try:
        return resolve(text, environ, service=f"tier {tier.name}")
    except MissingSecret as exc:
        raise BackupError(
            f"The {what} of the {tier.name} tier in {environment.name}: {exc} "
            f"({sources_hint(environment)})."
        ) from None


def _path(text):
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path(settings.BASE_DIR) / path
    return path


def local_path(tier, environment, environ=None):
    """Return the host folder of a filesystem or nfs tier's repository."""
    if tier.kind not in TierKind.HOST_PATHS:
        raise BackupError(f"The {tier.name} tier is not a folder on the Docker host.")
    environ = environ if environ is not None else environ_for(environment)
    base = _value(tier, environment, environ, tier.location, "path")
    return _path(base) / environment.name


def tape_path(tier, environment, environ=None):
    """Return the device, or the folder, a tape tier writes archives to."""
    environ = environ if environ is not None else environ_for(environment)
    return _path(_value(tier, environment, environ, tier.location, "device"))


def repository(tier, environment, environ=None):
    """Return the :class:`Repository` of ``environment`` in ``tier``.

    Raises BackupError naming the variable when a reference cannot be
    resolved.
    """
    if not tier.is_repository:
        raise BackupError(f"The {tier.name} tier is a tape, not a repository.")
    environ = environ if environ is not None else environ_for(environment)
    conf = tier.settings or {}
    name = f"{tier.name} tier of {environment.name}"
    password = _value(
        tier, environment, environ, conf.get("password", DEFAULT_PASSWORD), "password"
    )
    options, extra = {}, {}
    if tier.kind in TierKind.HOST_PATHS:
        url = str(local_path(tier, environment, environ))
    elif tier.kind == TierKind.SFTP:
        base = _value(tier, environment, environ, tier.location, "url").rstrip("/")
        url = f"{base}/{environment.name}"
        options["sftp.command"] = _ssh_command(tier, environment, environ, base)
    else:  # s3
        endpoint = _value(tier, environment, environ, tier.location, "endpoint")
        bucket = _value(tier, environment, environ, tier.bucket, "bucket")
        url = f"s3:{endpoint.rstrip('/')}/{bucket}/{environment.name}"
        for key, variable in (
            ("access_key", "AWS_ACCESS_KEY_ID"),
            ("secret_key", "AWS_SECRET_ACCESS_KEY"),
        ):
            if conf.get(key):
                extra[variable] = _value(tier, environment, environ, conf[key], key)
        if tier.region:
            options["s3.region"] = tier.region
    try:
        return Repository(url, password, name=name, environ=extra, options=options)
    except ResticError as exc:
        raise BackupError(str(exc)) from None


def _ssh_command(tier, environment, environ, base):
    """Return the ssh command restic's sftp backend runs (``sftp.command``)."""
    conf = tier.settings or {}
    target = base.removeprefix("sftp:").split(":", 1)[0]
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=30"]
    if conf.get("port"):
        argv += ["-p", _value(tier, environment, environ, str(conf["port"]), "port")]
    if conf.get("identity_file"):
        key = _path(
            _value(tier, environment, environ, conf["identity_file"], "identity file")
        )
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if conf.get("known_hosts"):
        known = _path(
            _value(tier, environment, environ, conf["known_hosts"], "known hosts")
        )
        argv += [
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    argv += [target, "-s", "sftp"]
    # restic splits this option itself (shell-like, no shell runs).
    return shlex.join(argv)

"""How to restore a backup record by hand, with plain restic (or tar).

The record page shows these commands so that a backup can be read back
when the portal is gone: the repository and its options come from the
tier's configuration resolved for the record's environment, exactly as a
backup run opens it; secrets are never shown, only the names of the
variables that hold them, and the commands read them from the terminal.
"""

import shlex
from dataclasses import dataclass, field

from stacks import engine
from stacks.secrets import references

from .choices import BackupMethod, TierKind
from .models import BackupStrategy
from .tiers import DEFAULT_PASSWORD, BackupError, repository

__all__ = ["RestoreInstructions", "restore_instructions"]

# The Docker host most environments use: commands need no -H for it.
LOCAL_DOCKER = "unix:///var/run/docker.sock"


@dataclass
class RestoreInstructions:
    """Shell steps, each ``(what it does, command)``, and notes."""

    steps: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, what, command):
        self.steps.append((what, command))


def _variable(text, fallback):
    names = references(text or "")
    return names[0] if names else fallback


def restore_instructions(record):
    """Return the :class:`RestoreInstructions` of ``record``."""
    tier = record.tier
    if tier.kind == TierKind.TAPE:
        return _tape(record)
    guide = RestoreInstructions()
    environment = record.environment
    try:
        repo = repository(tier, environment)
        url, options = repo.url, repo.options
    except BackupError as exc:
        url, options = record.repository, {}
        guide.notes.append(
            f"The tier's settings cannot be resolved now ({exc}); the repository "
            "below is the one recorded at backup time, without its options."
        )
    conf = tier.settings or {}
    password = _variable(conf.get("password", DEFAULT_PASSWORD), "the tier's password")
    guide.notes.append(
        f"The repository password is the value of {password} in environment "
        f"{environment.name} (its settings.variables, configs/env/"
        f"{environment.name}.env, or the process variables it names)."
    )
    restic = "restic" + "".join(
        f" -o {shlex.quote(f'{key}={value}')}" for key, value in options.items()
    )
    guide.add(
        "Name the repository", f"export RESTIC_REPOSITORY={shlex.quote(url or '')}"
    )
    guide.add(
        f"Type the repository password ({password}); it is not echoed",
        "read -rs -p 'Repository password: ' RESTIC_PASSWORD && export RESTIC_PASSWORD",
    )
    if tier.kind == TierKind.S3:
        for key, variable, prompt, flags in (
            ("access_key", "AWS_ACCESS_KEY_ID", "S3 access key", "-r"),
            ("secret_key", "AWS_SECRET_ACCESS_KEY", "S3 secret key", "-rs"),
        ):
            source = _variable(conf.get(key, ""), key)
            guide.add(
                f"Type the {prompt} ({source})",
                f"read {flags} -p '{prompt}: ' {variable} && export {variable}",
            )
    snapshot = record.snapshot_id or "<snapshot>"
    source = record.copied_from_id or record.pk
    guide.add(
        "Find the snapshot by its tags, as restic alone can",
        f"{restic} snapshots --tag record={source}",
    )
    guide.add("List its files", f"{restic} ls {snapshot}")
    guide.add(
        f"Restore its files into the folder restore-{record.pk}",
        f"{restic} restore {snapshot} --target restore-{record.pk}",
    )
    _method_steps(guide, record, restic, snapshot)
    return guide


def _method_steps(guide, record, restic, snapshot):
    """Add the steps that load the data back into its service."""
    strategy = BackupStrategy.objects.filter(service=record.service_name).first()
    manifest = record.manifest or {}
    if strategy is None or strategy.method != BackupMethod.PG_DUMP:
        return
    database = manifest.get("database")
    service = record.service
    if not database or service is None:
        return
    environment = record.environment
    project = environment.project_name(service.stack)
    docker = "docker"
    if environment.docker_host and environment.docker_host != LOCAL_DOCKER:
        docker += f" -H {shlex.quote(environment.docker_host)}"
    container = (
        f'"$({docker} ps -q --filter '
        f"label={engine.labels.COMPOSE_PROJECT}={project} --filter "
        f'label={engine.labels.COMPOSE_SERVICE}={service.name})"'
    )
    target = f"restored_{record.pk}"
    dump = f"/{database}.{record.strategy}.dump"
    # The container's own POSTGRES_USER, read inside it: the role the dump
    # was taken as.
    role = '-U "${POSTGRES_USER:-postgres}"'
    guide.add(
        f"Create the database {target} in the running {service.name}",
        f"{docker} exec {container} sh -c {shlex.quote(f'createdb {role} {target}')}",
    )
    guide.add(
        f"Stream the dump into it (into the live database instead: -d {database} "
        "--clean --if-exists, which replaces what the dump holds)",
        f"{restic} dump {snapshot} {shlex.quote(dump)} | {docker} exec -i "
        f"{container} sh -c "
        + shlex.quote(f"pg_restore {role} -d {target} --no-owner"),
    )


def _tape(record):
    guide = RestoreInstructions()
    path = shlex.quote(record.repository or "<archive>")
    guide.notes.append(
        "A tape tier holds a tar archive of the snapshot: PORTAL-MANIFEST.json "
        "first (environment, service, strategy, record, snapshot, tags, the "
        "data's manifest), PORTAL-SHA256SUMS last. No restic is needed."
    )
    guide.add("List the archive", f"tar -tvf {path}")
    guide.add(
        f"Extract it into the folder restore-{record.pk}",
        f"mkdir -p restore-{record.pk} && tar -xf {path} -C restore-{record.pk}",
    )
    guide.add(
        "Check every file against the checksums written with it",
        f"cd restore-{record.pk} && sha256sum -c PORTAL-SHA256SUMS",
    )
    return guide

"""The retention tests run in the backup tests' environment (a copy of demo
whose storage tiers point at this test's folder, sshd and S3 server)."""

from tests.backups.conftest import (  # noqa: F401  (fixtures)
    backup_environment,
    backup_variables,
    configs,
    operator,
    running,
    s3_server,
    sshd,
)

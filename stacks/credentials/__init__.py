"""Credentials of environments: their check, and hard-coded secrets.

- :mod:`.check`: :func:`check_environment` judges the variables an
  environment's services (and backup tiers) refer to: set, not empty, not
  a well-known value, long enough, not shared between services that should
  not share them (rules in :mod:`.rules`, references found by
  :mod:`.usage`). ``manage.py check_credentials`` prints it, the
  environment page shows it, and :func:`check_before_start` runs it before
  every start and restart: refused in a protected environment, warnings
  elsewhere.
- :mod:`.scan`: ``manage.py scan_secrets`` finds secrets written into
  configuration files, rendered compose files and the stored configuration
  (the importer refuses the ones that reach a protected environment:
  ``stacks.schema.secretrules``).
- :mod:`.registry`: other apps (backups) register what else resolves an
  environment's variables.

No function here returns, logs or stores a value.
"""

from .check import (
    CredentialReport,
    check_before_start,
    check_environment,
    known_values,
    policy_for,
)
from .registry import VariableUser, register_variable_users, variable_users
from .rules import ERROR, OK, WARNING, get_config
from .scan import Finding, ScanReport, scan

__all__ = [
    "ERROR",
    "OK",
    "WARNING",
    "CredentialReport",
    "Finding",
    "ScanReport",
    "VariableUser",
    "check_before_start",
    "check_environment",
    "get_config",
    "known_values",
    "policy_for",
    "register_variable_users",
    "scan",
    "variable_users",
]

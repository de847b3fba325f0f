"""The backup tiers as users of an environment's variables.

Registered with ``stacks.credentials`` in :meth:`BackupsConfig.ready`, so
``manage.py check_credentials`` and the environment page judge the
repository passwords and cloud keys the environment's tiers refer to
(``${BACKUP_REPOSITORY_PASSWORD}``, ``${BACKUP_S3_SECRET_KEY}``, ...) with
the services' secrets: set, strong, and not shared with a service.
"""

from stacks.credentials import VariableUser

from .models import BackupPolicy, StorageTier
from .tiers import DEFAULT_PASSWORD

__all__ = ["SECRET_FIELDS", "tier_users"]

#: The tier settings that hold credentials.
SECRET_FIELDS = ("password", "access_key", "secret_key")
# The tier settings that are resolved from the environment's variables.
_RESOLVED_SETTINGS = (
    "access_key",
    "secret_key",
    "port",
    "identity_file",
    "known_hosts",
)


def tier_users(environment):
    """Return a :class:`VariableUser` per storage tier of ``environment``'s policy."""
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        return []
    tiers = {t.name: t for t in StorageTier.objects.filter(name__in=policy.tiers)}
    users = []
    for name in policy.tiers:
        tier = tiers.get(name)
        if tier is None:
            continue
        conf = tier.settings or {}
        values = {"location": tier.location, "bucket": tier.bucket}
        if tier.is_repository:
            values["password"] = conf.get("password", DEFAULT_PASSWORD)
        for key in _RESOLVED_SETTINGS:
            if conf.get(key) not in (None, ""):
                values[key] = str(conf[key])
        users.append(
            VariableUser(f"backup tier {name}", values, secret_fields=SECRET_FIELDS)
        )
    return users

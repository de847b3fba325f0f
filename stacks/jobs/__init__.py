"""Runners of the stacks app: what the worker executes.

Importing this package registers every runner with the operations engine
(``portal.operations.autodiscover`` imports each app's ``jobs``):

- :mod:`.lifecycle`: ``stack.start``, ``stack.stop``, ``stack.restart``;
- :mod:`.hostcheck`: ``host.check``;
- :mod:`.wipes`: ``wipe.stack``, ``wipe.data``, ``wipe.environment``;
- :mod:`.networks`: ``network.check``, ``network.validate``,
  ``network.health``, ``network.cleanup``.
"""

from .hostcheck import CheckHostJob
from .lifecycle import RestartStackJob, StartStackJob, StopStackJob
from .networks import (
    CheckNetworkConflictsJob,
    CheckNetworkHealthJob,
    CleanupNetworksJob,
    ValidateNetworksJob,
)
from .wipes import WipeDataJob, WipeEnvironmentJob, WipeStackJob

__all__ = [
    "CheckHostJob",
    "CheckNetworkConflictsJob",
    "CheckNetworkHealthJob",
    "CleanupNetworksJob",
    "RestartStackJob",
    "StartStackJob",
    "StopStackJob",
    "ValidateNetworksJob",
    "WipeDataJob",
    "WipeEnvironmentJob",
    "WipeStackJob",
]

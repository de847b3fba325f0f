"""The RQ worker class used by ``manage.py rqworker``.

Importing the job modules and docker-py in the parent process means each
forked work horse starts with them loaded, which removes ~100 ms of import
time from every job.
"""

import docker  # noqa: F401
from rq.worker import Worker

import portal.jobs  # noqa: F401


class PortalWorker(Worker):
    """A forking worker with the portal's job modules preloaded."""

"""Entry points the RQ worker runs."""

from rq import get_current_job

from .operations import execute_operation

__all__ = ["run_operation"]


def run_operation(operation_id):
    """Run the Operation ``operation_id`` (its RQ job has the same id)."""
    job = get_current_job()
    worker_name = (job.worker_name or "") if job is not None else ""
    return execute_operation(operation_id, worker_name=worker_name)

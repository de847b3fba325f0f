"""What can go wrong with an operation, as exceptions."""

__all__ = [
    "ConfirmationMismatch",
    "OperationAbandoned",
    "OperationCanceled",
    "OperationConflict",
    "OperationFailed",
    "PlanError",
    "UnknownOperationKind",
]


class OperationFailed(Exception):
    """The work ran and did not succeed; the message becomes ``error``."""


class OperationCanceled(Exception):
    """The operation was canceled; the runner stops between steps."""


class OperationAbandoned(OperationCanceled):
    """The operation was taken away from this process (reaped or finished).

    A subclass of OperationCanceled so that a runner's cleanup for a
    cancel also runs.
    """


class OperationConflict(Exception):
    """A mutating operation is refused because another one holds the lock."""

    def __init__(self, message, *, blocker=None):
        super().__init__(message)
        self.blocker = blocker


class UnknownOperationKind(LookupError):
    """No runner is registered for this kind."""


class PlanError(ValueError):
    """A runner cannot compute the plan of a request; the message says why.

    Raised at request time, before anything exists (a configuration that
    cannot be applied, an unset variable in a port); views and commands
    show the message.
    """


class ConfirmationMismatch(PlanError):
    """A destructive request's typed confirmation does not match."""

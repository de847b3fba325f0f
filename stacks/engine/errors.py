"""The engine's one exception and the translation of Docker's errors into it.

Every expected failure of a Docker call reaches callers as
:class:`EngineError` with a message for an operator: the object, the
environment or host, and Docker's own explanation. Callers catch this one
class instead of docker-py's and requests' exception trees.
"""

from contextlib import contextmanager

from docker.errors import APIError, DockerException
from requests.exceptions import RequestException

__all__ = ["EngineError", "api_error_text", "engine_errors"]


class EngineError(Exception):
    """An expected failure of a Docker operation; the message names the cause."""


def api_error_text(exc):
    """Return the engine's explanation of ``exc``, or its text."""
    return getattr(exc, "explanation", None) or str(exc)


@contextmanager
def engine_errors(where):
    """Turn Docker, HTTP and socket errors inside the block into EngineError.

    ``where`` says what was being done, e.g. ``"Docker host unix://... of
    environment demo"``; it starts the message. An EngineError raised inside
    passes through unchanged.
    """
    try:
        yield
    except EngineError:
        raise
    except APIError as exc:
        raise EngineError(f"{where}: {api_error_text(exc)}") from exc
    except (DockerException, RequestException, OSError) as exc:
        raise EngineError(f"{where}: {exc}") from exc

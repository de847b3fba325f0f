"""Images: make sure a service's image is on the Docker host."""

import re
import time

from docker.errors import APIError, ImageNotFound

from .errors import EngineError, api_error_text

__all__ = ["ensure_image"]


def ensure_image(client, ref, *, service, log, pull=True, progress_every=5.0):
    """Return the id of image ``ref``, pulling it when it is not local.

    Pull progress goes to ``log`` at most every ``progress_every`` seconds per
    layer, plus each layer's status changes (waiting, downloading, done).
    """
    try:
        return client.api.inspect_image(ref)["Id"]
    except ImageNotFound:
        pass
    if not pull:
        raise EngineError(f"Image {ref} of service {service} is not on the host.")
    log.info(f"{service}: pulling image {ref}")
    started = time.monotonic()
    layers = {}
    try:
        for event in client.api.pull(ref, stream=True, decode=True):
            if "error" in event:
                raise EngineError(
                    f"Image {ref} of service {service} could not be pulled: "
                    f"{event['error']}"
                )
            _log_pull_event(event, layers, log, service, progress_every)
    except APIError as exc:
        raise EngineError(
            f"Image {ref} of service {service} could not be pulled: "
            f"{api_error_text(exc)}"
        ) from exc
    try:
        image_id = client.api.inspect_image(ref)["Id"]
    except ImageNotFound as exc:
        raise EngineError(
            f"Image {ref} of service {service} is still missing after the pull."
        ) from exc
    log.info(f"{service}: pulled {ref} in {time.monotonic() - started:.1f}s")
    return image_id


_LAYER_ID = re.compile(r"[0-9a-f]{12}")


def _log_pull_event(event, layers, log, service, every):
    layer, status = event.get("id"), event.get("status", "")
    if not layer or not _LAYER_ID.fullmatch(layer):
        # "Pulling from library/x" (id: the tag), "Digest: ...", "Status: ..."
        if status:
            log.info(f"{service}: {status}")
        return
    now = time.monotonic()
    last = layers.get(layer)
    detail = event.get("progressDetail") or {}
    if last and last[0] == status and now - last[1] < every:
        return
    layers[layer] = (status, now)
    if detail.get("total"):
        pct = 100 * detail.get("current", 0) / detail["total"]
        log.info(f"{service}: layer {layer} {status} {pct:.0f}%")
    else:
        log.info(f"{service}: layer {layer} {status}")

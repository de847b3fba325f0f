"""The GPU status knobs: ``settings.PORTAL_GPU`` over these defaults."""

from django.conf import settings

__all__ = ["DEFAULTS", "get_config"]

DEFAULTS = {
    # Seconds between two samples of a host.
    "INTERVAL": 5.0,
    # Seconds between two tries on a host where no source found a GPU.
    "UNAVAILABLE_INTERVAL": 60.0,
    # Samples kept per environment in Redis (30 minutes at 5 s).
    "HISTORY": 360,
    # The nvidia-smi the local source runs.
    "NVIDIA_SMI": "nvidia-smi",
    # A sample older than this many intervals is shown as stale.
    "STALE_AFTER": 3,
}


def get_config():
    """Return DEFAULTS updated by ``settings.PORTAL_GPU``."""
    return {**DEFAULTS, **getattr(settings, "PORTAL_GPU", {})}

"""Channels group names of GPU status (the sampler publishes, consumers join)."""

__all__ = ["gpu_group"]


def gpu_group(environment):
    """Return the group of an environment's GPU samples: ``gpu.<env>``."""
    return f"gpu.{environment}"

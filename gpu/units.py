"""How GPU figures are written for people."""

__all__ = ["format_bytes"]


def format_bytes(value):
    """Return bytes as GiB (or MiB below one GiB), e.g. ``41.1 GiB``."""
    if value is None:
        return "n/a"
    if value >= 1 << 30:
        return f"{value / (1 << 30):.1f} GiB"
    return f"{value / (1 << 20):.0f} MiB"

"""Address rules shared by the configuration checks and the engine."""

__all__ = ["WILDCARD_ADDRESSES", "ips_overlap"]

#: Host addresses that mean "every address": Docker reports an empty one for
#: a port published on all addresses; "::" is a dual-stack wildcard.
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")


def ips_overlap(a, b):
    """Return whether host addresses ``a`` and ``b`` can collide on a port.

    Equal addresses collide, and a wildcard collides with every address.
    """
    return a == b or a in WILDCARD_ADDRESSES or b in WILDCARD_ADDRESSES

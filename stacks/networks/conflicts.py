"""Subnet conflicts: planned networks against each other and what the host has.

Pure functions over plain records, no Django and no Docker, so the same
code answers the start's preflight, ``manage.py check_network_conflicts``,
the network page and ``bench/bench_network_conflicts.py``.

Every subnet becomes an integer interval ``[first, last]`` (IPv6 ones
shifted above every IPv4 address, so the two families never meet). One
sort and one sweep find every overlapping pair: walking the intervals by
their first address, an interval overlaps exactly those already seen whose
last address is not below its first, which a heap per side keeps at hand.
That is ``O((n + m) log(n + m) + k)`` for ``n`` planned networks, ``m``
things on the host and ``k`` conflicts, where comparing every pair is
``O(n * m)``.

A conflict names both sides and carries a suggestion: a subnet of the
planned one's size that overlaps nothing planned and nothing on the host
(networks, routes, interfaces and the daemon's default address pools),
found first-fit in the environment's subnet pool, then the planned
subnet's /16, then the private ranges. Suggestions are handed out once, so
two conflicts never get the same one.
"""

import heapq
import ipaddress
import socket
from bisect import bisect_right, insort
from dataclasses import dataclass, field

__all__ = [
    "CONFLICT",
    "FALLBACK_RANGES",
    "WARNING",
    "Conflict",
    "Occupant",
    "Planned",
    "PlanProblem",
    "Report",
    "block",
    "find_conflicts",
    "free_block",
    "pairwise_conflicts",
]

#: Severity of an obstacle a start refuses over.
CONFLICT = "conflict"
#: Severity of a risk that does not stop a start (the daemon's default
#: address pools: Docker may hand that range to a network created without
#: a subnet, but nothing holds it now).
WARNING = "warning"

#: Where a suggestion is looked for after the environment's pool and the
#: planned subnet's /16.
FALLBACK_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")

# IPv6 intervals start above every IPv4 address.
_V6_SHIFT = 1 << 128


def block(text):
    """Return ``(first, last, prefixlen, version)`` of a CIDR or an address.

    Host bits are ignored (``10.1.2.3/24`` is ``10.1.2.0/24``), as an
    interface address names its network. Raises ValueError on bad text.
    Hot path: parsing 20,000 subnets must stay well under the bench's
    budget, hence ``inet_pton`` rather than :mod:`ipaddress`.
    """
    address, _, length = str(text).strip().partition("/")
    if ":" in address:
        version, bits, family, shift = 6, 128, socket.AF_INET6, _V6_SHIFT
    else:
        version, bits, family, shift = 4, 32, socket.AF_INET, 0
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
        prefix = int(length) if length else bits
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP network") from None
    if not 0 <= prefix <= bits:
        raise ValueError(f"{text!r} has no valid prefix length")
    size = 1 << (bits - prefix)
    first = (value & ~(size - 1)) + shift
    return first, first + size - 1, prefix, version


def _text(first, prefix, version):
    if version == 6:
        packed = (first - _V6_SHIFT).to_bytes(16, "big")
        return f"{socket.inet_ntop(socket.AF_INET6, packed)}/{prefix}"
    return f"{socket.inet_ntop(socket.AF_INET, first.to_bytes(4, 'big'))}/{prefix}"


@dataclass(frozen=True)
class Planned:
    """A network the configuration plans in one environment."""

    environment: str
    stack: str
    network: str
    docker_name: str
    subnet: str
    gateway: str = ""
    #: The environment's subnet pool ("" when it has none).
    pool: str = ""

    def describe(self):
        return (
            f"network {self.docker_name} ({self.subnet}, environment "
            f"{self.environment}, stack {self.stack})"
        )

    def fix(self, suggestion):
        """Return what to change so the network uses ``suggestion``."""
        return (
            f"set environments.{self.environment}.overrides.networks."
            f"{self.network}: {{subnet: {suggestion}}}"
        )


@dataclass(frozen=True)
class Occupant:
    """Something on the Docker host that holds addresses.

    ``kind`` is ``network`` (a Docker network), ``route`` (a host route),
    ``interface`` (an address of a host interface) or ``pool`` (one of the
    daemon's default address pools). ``owner`` is the Docker name of the
    planned network this is (a portal network carrying its labels), or "".
    """

    kind: str
    subnet: str
    name: str
    detail: str = ""
    owner: str = ""

    def describe(self):
        if self.kind == "network":
            extra = f", {self.detail}" if self.detail else ""
            return f"Docker network {self.name} ({self.subnet}{extra})"
        if self.kind == "route":
            return f"host route {self.name}" + (
                f" ({self.detail})" if self.detail else ""
            )
        if self.kind == "interface":
            return f"address {self.subnet} of host interface {self.name}"
        return f"the Docker daemon's default address pool {self.name}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass(frozen=True)
class PlanProblem:
    """An environment whose networks cannot be planned (pool too small)."""

    environment: str
    message: str
    #: Number of /24 networks the environment needs.
    needed: int = 0
    pool: str = ""


@dataclass
class Conflict:
    """A planned network and what is in its way."""

    planned: Planned
    other: object  # Planned or Occupant
    severity: str = CONFLICT
    #: "overlap", or "name": a network of the planned name that is not ours.
    reason: str = "overlap"
    suggestion: str = ""
    #: Why no suggestion came from the pool ("" when it did, or no pool).
    pool_note: str = ""

    def message(self):
        """Return one sentence naming both sides and what to do."""
        if self.reason == "name":
            text = (
                f"{self.planned.describe()}: its name is taken by "
                f"{self.other.describe()}, which the portal did not create; "
                "remove or rename that network"
            )
        else:
            text = f"{self.planned.describe()} overlaps {self.other.describe()}"
        if self.reason == "overlap":
            if self.suggestion:
                text += (
                    f"; free instead: {self.suggestion} "
                    f"({self.planned.fix(self.suggestion)})"
                )
            else:
                text += "; no free subnet of its size was found"
        if self.pool_note:
            text += f" ({self.pool_note})"
        return text + "."

    def as_dict(self):
        other = self.other
        return {
            "severity": self.severity,
            "reason": self.reason,
            "environment": self.planned.environment,
            "stack": self.planned.stack,
            "network": self.planned.docker_name,
            "subnet": self.planned.subnet,
            "other_kind": "planned" if isinstance(other, Planned) else other.kind,
            "other": other.docker_name if isinstance(other, Planned) else other.name,
            "other_subnet": other.subnet,
            "suggestion": self.suggestion,
            "message": self.message(),
        }


@dataclass
class Report:
    """What :func:`find_conflicts` found."""

    conflicts: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    #: Occupants or planned networks whose subnet could not be read.
    unreadable: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.conflicts and not self.problems


def _is_self(planned, occupant):
    return occupant.kind == "network" and occupant.owner == planned.docker_name


def find_conflicts(planned, occupants, *, focus=None, problems=(), suggest=True):
    """Return a :class:`Report` of the conflicts of ``planned`` networks.

    Args:
        planned: every :class:`Planned` network on one Docker host (all its
            environments): they are checked against each other, and every
            suggestion avoids them all.
        occupants: the host's :class:`Occupant` records.
        focus: a predicate on Planned; only conflicts of networks it
            accepts are reported (default: all).
        problems: :class:`PlanProblem` records; each gets a suggested pool.

    A portal network (``owner`` set) is never in the way of the planned
    network it is, and stands for it when its subnet is the planned one.
    Overlaps with a default address pool are warnings; the rest conflicts.
    """
    focus = focus or (lambda p: True)
    report = Report()
    subnet_of = {}
    for p in planned:
        subnet_of[p.docker_name] = p.subnet
    # (first, last, side, index); side 0 planned, 1 occupant.
    intervals = []
    for i, p in enumerate(planned):
        try:
            first, last, _, _ = block(p.subnet)
        except ValueError:
            report.unreadable.append(p)
            continue
        intervals.append((first, last, 0, i))
    names = {}
    for j, o in enumerate(occupants):
        if o.kind == "network":
            names.setdefault(o.name, o)
        if o.owner and subnet_of.get(o.owner) == o.subnet:
            # The planned network itself, in place: represented by its plan.
            continue
        try:
            first, last, _, _ = block(o.subnet)
        except ValueError:
            report.unreadable.append(o)
            continue
        intervals.append((first, last, 1, j))
    intervals.sort()

    pairs = []
    active = ([], [])  # heaps of (last, index) per side
    heappop = heapq.heappop
    for first, last, side, index in intervals:
        for heap in active:
            while heap and heap[0][0] < first:
                heappop(heap)
        if side == 0:
            for _, j in active[0]:
                pairs.append((j, index, 0))
            for _, j in active[1]:
                pairs.append((index, j, 1))
        else:
            for _, i in active[0]:
                pairs.append((i, index, 1))
        heapq.heappush(active[side], (last, index))

    for i, j, side in pairs:
        p = planned[i]
        if side == 0:
            q = planned[j]
            if focus(p):
                report.conflicts.append(Conflict(p, q))
            if focus(q):
                report.conflicts.append(Conflict(q, p))
            continue
        o = occupants[j]
        if _is_self(p, o) or not focus(p):
            continue
        if o.kind == "pool":
            report.warnings.append(Conflict(p, o, severity=WARNING))
        else:
            report.conflicts.append(Conflict(p, o))
    for p in planned:
        o = names.get(p.docker_name)
        if o is not None and o.owner != p.docker_name and focus(p):
            report.conflicts.append(Conflict(p, o, reason="name"))
    report.problems = list(problems)
    if suggest:
        _suggest(report, planned, occupants)
    return report


def pairwise_conflicts(planned, occupants):
    """Return the overlapping ``(planned index, occupant index)`` pairs the
    slow way, comparing every pair with :mod:`ipaddress` (what the seed's
    checker did); the bench's baseline and the tests' reference."""
    nets = [ipaddress.ip_network(p.subnet, strict=False) for p in planned]
    others = [ipaddress.ip_network(o.subnet, strict=False) for o in occupants]
    return [
        (i, j)
        for i, a in enumerate(nets)
        for j, b in enumerate(others)
        if a.version == b.version and a.overlaps(b)
    ]


class _Space:
    """Taken address intervals, merged, with first-fit search for blocks."""

    def __init__(self, intervals):
        merged = []
        for first, last in sorted(intervals):
            if merged and first <= merged[-1][1] + 1:
                if last > merged[-1][1]:
                    merged[-1][1] = last
            else:
                merged.append([first, last])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]
        # Suggestions handed out, kept apart so each is given once.
        self.given = []
        # (range first, size) -> where the last search there stopped.
        self.cursor = {}

    def _taken_until(self, first, last):
        """Return the last address of a taken interval meeting
        ``[first, last]``, or None."""
        i = bisect_right(self.starts, last) - 1
        if i >= 0 and self.ends[i] >= first:
            return self.ends[i]
        k = bisect_right(self.given, (last, _V6_SHIFT << 1)) - 1
        if k >= 0 and self.given[k][1] >= first:
            return self.given[k][1]
        return None

    def find(self, low, high, size):
        """Return the first free aligned block of ``size`` in [low, high]."""
        key = (low, size)
        candidate = max(low, self.cursor.get(key, low))
        candidate = (candidate + size - 1) // size * size
        while candidate + size - 1 <= high:
            taken = self._taken_until(candidate, candidate + size - 1)
            if taken is None:
                self.cursor[key] = candidate + size
                insort(self.given, (candidate, candidate + size - 1))
                return candidate
            candidate = (taken + 1 + size - 1) // size * size
        self.cursor[key] = high + 1
        return None


def free_block(space, prefix, version, ranges):
    """Return the first free block of ``/prefix`` in ``ranges`` (CIDR texts)
    as text, or ""; ``space`` is a :class:`_Space`."""
    bits = 32 if version == 4 else 128
    size = 1 << (bits - prefix)
    for text in ranges:
        try:
            low, high, range_prefix, range_version = block(text)
        except ValueError:
            continue
        if range_version != version or range_prefix > prefix:
            continue
        found = space.find(low, high, size)
        if found is not None:
            return _text(found, prefix, version)
    return ""


def _inside(subnet, pool):
    if not subnet:
        return False
    first, last, _, _ = block(subnet)
    low, high, _, _ = block(pool)
    return low <= first and last <= high


def _suggest(report, planned, occupants):
    """Give each conflicting planned network (and each problem) a free subnet."""
    if not (report.conflicts or report.warnings or report.problems):
        return
    taken = []
    for item in (*planned, *occupants):
        try:
            first, last, _, _ = block(item.subnet)
        except ValueError:
            continue
        taken.append((first, last))
    space = _Space(taken)
    chosen = {}
    for conflict in (*report.conflicts, *report.warnings):
        if conflict.reason != "overlap":
            continue
        p = conflict.planned
        if p.docker_name not in chosen:
            first, _, prefix, version = block(p.subnet)
            ranges = [p.pool] if p.pool else []
            around = _text(first, min(prefix, 16), version)
            ranges += [around, *FALLBACK_RANGES]
            suggestion = free_block(space, prefix, version, ranges)
            note = ""
            if p.pool and not _inside(suggestion, p.pool):
                note = f"no free /{prefix} is left in subnet pool {p.pool}"
            chosen[p.docker_name] = (suggestion, note)
        conflict.suggestion, conflict.pool_note = chosen[p.docker_name]
    problems = []
    for problem in report.problems:
        prefix = 24
        while (1 << (24 - prefix)) < max(problem.needed, 1) and prefix > 8:
            prefix -= 1
        ranges = []
        if problem.pool:
            first, _, pool_prefix, _ = block(problem.pool)
            ranges.append(_text(first, min(pool_prefix, 16), 4))
        suggestion = free_block(space, prefix, 4, [*ranges, *FALLBACK_RANGES])
        text = problem.message
        if suggestion:
            text += f"; a free /{prefix} on this host: {suggestion}"
        problems.append(
            PlanProblem(problem.environment, text, problem.needed, problem.pool)
        )
    report.problems = problems

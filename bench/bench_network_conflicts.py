"""Conflict check of 10,000 planned networks against 10,000 existing ones.

Compares :func:`stacks.networks.conflicts.find_conflicts` (one sort and a
sweep, suggestions included) with the pairwise baseline the seed's checker
used (``ipaddress.ip_network(a).overlaps(b)`` for every planned x existing
pair), in the same run and on the same data:

- planned: N /24 networks in 10.0.0.0/8 (as N environments' plans would
  be), one in 100 of them overlapped by an existing network;
- existing: M networks, /24s in 100.64.0.0/10 and the overlapping /25s,
  plus the host's routes, interfaces and Docker's seven default pools.

The fast check runs ``--repeat`` times (parsing every subnet each time);
the baseline compares every pair of a sample of ``--sample`` planned
networks with all M and is scaled to N (comparing all 10^8 pairs would
take minutes), and both must find the same overlapping pairs on the
sample. No Docker, no database (Django is set up only to import the
package). Run from the repository root:

    python bench/bench_network_conflicts.py [--planned 10000] [--existing 10000]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from stacks.networks.conflicts import (  # noqa: E402
    Occupant,
    Planned,
    block,
    find_conflicts,
    pairwise_conflicts,
)

DEFAULT_POOLS = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)


def world(n_planned, n_existing):
    planned = [
        Planned(
            environment=f"env{i // 6}",
            stack=f"stack{i % 6}",
            network=f"net{i % 6}",
            docker_name=f"multimodal-env{i // 6}-stack{i % 6}_net{i % 6}",
            subnet=f"10.{i // 256}.{i % 256}.0/24",
        )
        for i in range(n_planned)
    ]
    existing = []
    for j in range(n_existing):
        if j % 100 == 0 and j < n_planned:
            # Overlaps planned network j.
            subnet = f"10.{j // 256}.{j % 256}.128/25"
        else:
            subnet = f"100.{64 + j // 256}.{j % 256}.0/24"
        existing.append(Occupant("network", subnet, f"foreign{j}", "not the portal's"))
    existing += [
        Occupant("route", "192.0.2.0/24", "192.0.2.0/24 dev eth0"),
        Occupant("interface", "192.0.2.2/24", "eth0"),
        *(
            Occupant("pool", base, base, f"split into /{size}")
            for base, size in DEFAULT_POOLS
        ),
    ]
    return planned, existing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planned", type=int, default=10_000)
    parser.add_argument("--existing", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    planned, existing = world(args.planned, args.existing)

    times, report = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = find_conflicts(planned, existing)
        times.append(time.perf_counter() - start)
    fast = statistics.median(times)
    suggestions = {c.suggestion for c in report.conflicts}
    assert all(suggestions) and len(suggestions) == len(report.conflicts)

    step = max(1, len(planned) // args.sample)
    sample_idx = list(range(0, len(planned), step))[: args.sample]
    sample = [planned[i] for i in sample_idx]
    start = time.perf_counter()
    slow_pairs = pairwise_conflicts(sample, existing)
    slow_sample = time.perf_counter() - start
    slow = slow_sample * len(planned) / len(sample)

    # A second, tighter baseline: every pair, but on integers parsed once.
    blocks = [block(o.subnet)[:2] for o in existing]
    start = time.perf_counter()
    int_pairs = []
    for i, p in enumerate(sample):
        first, last = block(p.subnet)[:2]
        for j, (a, b) in enumerate(blocks):
            if a <= last and first <= b:
                int_pairs.append((i, j))
    int_sample = time.perf_counter() - start
    int_slow = int_sample * len(planned) / len(sample)
    assert sorted(int_pairs) == sorted(slow_pairs)

    # The same pairs on the sample.
    index = {id(o): j for j, o in enumerate(existing)}
    wanted = {planned[i].docker_name for i in sample_idx}
    fast_pairs = sorted(
        (sample_idx.index(planned.index(c.planned)), index[id(c.other)])
        for c in report.conflicts
        if c.planned.docker_name in wanted and isinstance(c.other, Occupant)
    )
    assert fast_pairs == sorted(slow_pairs), (fast_pairs[:5], sorted(slow_pairs)[:5])

    print(
        f"{len(planned):,} planned x {len(existing):,} existing "
        f"(networks, routes, interfaces, pools)"
    )
    print(
        f"  conflicts found: {len(report.conflicts)}, each with a distinct free "
        f"suggestion; warnings: {len(report.warnings)}"
    )
    print(
        f"  sweep (parse, sort, sweep, suggest): median {fast * 1000:.1f} ms, "
        f"min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
        f"over {len(times)} runs"
    )
    print(
        f"  pairwise baseline (ipaddress.overlaps on every pair): "
        f"{slow_sample:.2f} s for {len(sample)} planned x {len(existing):,}, "
        f"{slow:.1f} s scaled to {len(planned):,}"
    )
    print(
        f"  pairwise on integers parsed once: {int_sample:.2f} s for the sample, "
        f"{int_slow:.1f} s scaled"
    )
    print(f"  same pairs on the sample: yes ({len(slow_pairs)} pairs)")
    print(
        f"  speed-up: {slow / fast:,.0f}x over the seed's pairwise check, "
        f"{int_slow / fast:,.0f}x over pairwise integers"
    )


if __name__ == "__main__":
    main()

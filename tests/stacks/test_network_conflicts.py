"""The conflict sweep and its suggestions, and the parsing of ``ip`` output.

Pure functions: no Docker, no database. The sweep is checked against the
pairwise reference on random worlds; every suggestion is checked to be free
of everything the check knew about.
"""

import ipaddress
import random

import pytest

from stacks.engine.hostnet import parse_addresses, parse_routes
from stacks.networks.conflicts import (
    CONFLICT,
    WARNING,
    Occupant,
    Planned,
    PlanProblem,
    block,
    find_conflicts,
    pairwise_conflicts,
)


def planned(name, subnet, env="demo", stack="core", pool=""):
    return Planned(
        environment=env,
        stack=stack,
        network=name,
        docker_name=f"multimodal-{env}-{stack}_{name}",
        subnet=subnet,
        pool=pool,
    )


def foreign(name, subnet):
    return Occupant("network", subnet, name, "not the portal's")


def overlaps(a, b):
    return ipaddress.ip_network(a, strict=False).overlaps(
        ipaddress.ip_network(b, strict=False)
    )


def random_subnet(rng):
    if rng.random() < 0.15:
        prefix = rng.randint(48, 64)
        value = (0xFD00 << 112) | rng.getrandbits(24) << (128 - 48)
        return str(ipaddress.ip_network((value, prefix), strict=False))
    prefix = rng.choice([16, 20, 22, 24, 24, 24, 25, 26, 28, 32])
    value = (10 << 24) | rng.getrandbits(16) << 8
    return str(ipaddress.ip_network((value, prefix), strict=False))


@pytest.mark.parametrize("seed", range(5))
def test_sweep_finds_exactly_the_pairs_of_the_pairwise_reference(seed):
    """Nested, equal, disjoint, IPv4 and IPv6 subnets: the same pairs."""
    rng = random.Random(seed)
    plans = [planned(f"n{i}", random_subnet(rng)) for i in range(300)]
    others = [foreign(f"x{j}", random_subnet(rng)) for j in range(300)]
    report = find_conflicts(plans, others, suggest=False)
    found = sorted(
        (plans.index(c.planned), others.index(c.other))
        for c in report.conflicts
        if isinstance(c.other, Occupant)
    )
    assert found == sorted(pairwise_conflicts(plans, others))
    planned_pairs = {
        (c.planned.docker_name, c.other.docker_name)
        for c in report.conflicts
        if isinstance(c.other, Planned)
    }
    expected = {
        (a.docker_name, b.docker_name)
        for a in plans
        for b in plans
        if a is not b and overlaps(a.subnet, b.subnet)
    }
    assert planned_pairs == expected


def test_our_network_in_place_is_not_a_conflict():
    """The portal's own network, same name and subnet, stands for its plan."""
    plan = planned("core-net", "10.231.0.0/24")
    ours = Occupant(
        "network",
        "10.231.0.0/24",
        plan.docker_name,
        "environment demo, stack core",
        owner=plan.docker_name,
    )
    report = find_conflicts([plan], [ours])
    assert report.conflicts == [] and report.ok


def test_our_network_with_an_old_subnet_blocks_only_other_networks():
    """Not in its own way (it is recreated), in the way of a neighbour."""
    core = planned("core-net", "10.231.1.0/24")
    ai = planned("ai-net", "10.231.0.0/24", stack="ai")
    old = Occupant(
        "network",
        "10.231.0.0/24",
        core.docker_name,
        "environment demo",
        core.docker_name,
    )
    report = find_conflicts([core, ai], [old])
    assert [(c.planned.network, c.other.name) for c in report.conflicts] == [
        ("ai-net", core.docker_name)
    ]


def test_a_foreign_network_with_the_planned_name_is_a_name_conflict():
    plan = planned("core-net", "10.231.0.0/24")
    squatter = foreign(plan.docker_name, "10.99.0.0/24")
    (conflict,) = find_conflicts([plan], [squatter]).conflicts
    assert conflict.reason == "name"
    assert "its name is taken by Docker network" in conflict.message()
    assert "remove or rename that network" in conflict.message()


def test_a_default_address_pool_is_a_warning_not_a_conflict():
    plan = planned("core-net", "172.30.0.0/24", env="production")
    pool = Occupant("pool", "172.28.0.0/14", "172.28.0.0/14", "split into /16")
    report = find_conflicts([plan], [pool])
    assert report.conflicts == [] and report.ok
    (warning,) = report.warnings
    assert warning.severity == WARNING
    assert not overlaps(warning.suggestion, "172.28.0.0/14")


def test_message_names_both_sides_and_how_to_use_the_suggestion():
    plan = planned("core-net", "10.231.0.0/24", pool="10.231.0.0/20")
    other = foreign("their-net", "10.231.0.128/25")
    (conflict,) = find_conflicts([plan], [other]).conflicts
    assert conflict.severity == CONFLICT
    assert conflict.message() == (
        "network multimodal-demo-core_core-net (10.231.0.0/24, environment demo, "
        "stack core) overlaps Docker network their-net (10.231.0.128/25, not the "
        "portal's); free instead: 10.231.1.0/24 (set environments.demo.overrides."
        "networks.core-net: {subnet: 10.231.1.0/24})."
    )


def test_suggestions_are_free_of_everything_and_never_given_twice():
    """Planned, networks, routes, interfaces, pools and other suggestions."""
    plans = [
        planned(f"n{i}", f"10.231.{i}.0/24", pool="10.231.0.0/20") for i in range(6)
    ]
    others = [
        foreign("wide", "10.231.0.0/21"),  # the first eight /24s of the pool
        Occupant("route", "10.231.8.0/23", "10.231.8.0/23 dev tun0"),
        Occupant("interface", "10.231.10.7/24", "eth1"),
        Occupant("pool", "10.231.12.0/22", "10.231.12.0/22", "split into /24"),
    ]
    report = find_conflicts(plans, others)
    suggestions = [c.suggestion for c in report.conflicts]
    assert len(suggestions) == 6 and len(set(suggestions)) == 6
    taken = [p.subnet for p in plans] + [o.subnet for o in others]
    for suggestion in suggestions:
        assert not any(overlaps(suggestion, t) for t in taken), suggestion
        assert ipaddress.ip_network(suggestion).prefixlen == 24
    for a in suggestions:
        for b in suggestions:
            assert a == b or not overlaps(a, b)


def test_a_full_pool_suggests_outside_it_and_says_so():
    plan = planned("core-net", "10.231.0.0/24", pool="10.231.0.0/22")
    others = [foreign("all-of-it", "10.231.0.0/22")]
    (conflict,) = find_conflicts([plan], others).conflicts
    assert conflict.suggestion and not overlaps(conflict.suggestion, "10.231.0.0/22")
    assert "no free /24 is left in subnet pool 10.231.0.0/22" in conflict.message()


def test_a_suggestion_prefers_the_environment_pool():
    plan = planned("core-net", "10.231.0.0/24", pool="10.231.0.0/20")
    (conflict,) = find_conflicts([plan], [foreign("x", "10.231.0.0/24")]).conflicts
    assert ipaddress.ip_network(conflict.suggestion).subnet_of(
        ipaddress.ip_network("10.231.0.0/20")
    )
    assert "subnet pool" not in conflict.message()


def test_a_pool_too_small_gets_a_free_pool_of_the_needed_size():
    problem = PlanProblem(
        "demo",
        "subnet pool 10.231.0.0/22 has room for 4",
        needed=6,
        pool="10.231.0.0/22",
    )
    others = [foreign("x", "10.231.0.0/21")]
    report = find_conflicts([], others, problems=[problem])
    assert not report.ok
    (text,) = [p.message for p in report.problems]
    suggested = text.rsplit(": ", 1)[1]
    assert ipaddress.ip_network(suggested).prefixlen == 21
    assert not overlaps(suggested, "10.231.0.0/21")


def test_focus_reports_only_the_networks_asked_about():
    a = planned("a", "10.1.0.0/24", env="one")
    b = planned("b", "10.1.0.0/25", env="two")
    report = find_conflicts([a, b], [], focus=lambda p: p.environment == "one")
    assert [(c.planned.network, c.other.network) for c in report.conflicts] == [
        ("a", "b")
    ]


def test_an_unreadable_subnet_is_recorded_not_raised():
    report = find_conflicts([planned("a", "10.1.0.0/33")], [foreign("x", "nonsense")])
    assert len(report.unreadable) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "10.1.2.3/24",
            (10 << 24 | 1 << 16 | 2 << 8, 10 << 24 | 1 << 16 | 2 << 8 | 255),
        ),
        (
            "10.1.2.3",
            (10 << 24 | 1 << 16 | 2 << 8 | 3, 10 << 24 | 1 << 16 | 2 << 8 | 3),
        ),
    ],
)
def test_block_reads_networks_and_addresses(text, expected):
    assert block(text)[:2] == expected


def test_block_refuses_bad_text():
    for bad in ("10.1.2/24", "10.1.2.0/33", "fd00::/129", "x"):
        with pytest.raises(ValueError, match="not an IP network|no valid prefix"):
            block(bad)


BUSYBOX_ROUTES = """\
default via 192.0.2.1 dev eth0
172.17.0.0/16 dev docker0 scope link  src 172.17.0.1
192.0.2.0/24 dev eth0 scope link  src 192.0.2.2
blackhole 198.19.255.0/24
unreachable 10.9.0.0/16 proto 250
10.8.0.5 via 192.0.2.1 dev eth0
10.7.0.0/16 via 192.0.2.1 dev eth0 table 100
local 127.0.0.0/8 dev lo table local scope host  src 127.0.0.1
broadcast 127.255.255.255 dev lo table local scope link  src 127.0.0.1
fd00::/64 dev eth0  metric 256
fe80::/64 dev eth0  metric 256
multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
"""


def test_parse_routes_keeps_paths_into_subnets():
    routes = {
        (r.subnet, r.device, r.type, r.table) for r in parse_routes(BUSYBOX_ROUTES)
    }
    assert routes == {
        ("172.17.0.0/16", "docker0", "unicast", ""),
        ("192.0.2.0/24", "eth0", "unicast", ""),
        ("198.19.255.0/24", "", "blackhole", ""),
        ("10.9.0.0/16", "", "unreachable", ""),
        ("10.8.0.5/32", "eth0", "unicast", ""),
        ("10.7.0.0/16", "eth0", "unicast", "100"),
        ("fd00::/64", "eth0", "unicast", ""),
    }


IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
4: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever
4: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever
7: br-1a2b3c4d5e6f    inet 10.240.16.1/24 brd 10.240.16.255 scope global br-1a2b3c4d5e6f
9: wg0@if3    inet 10.66.0.1/24 scope global wg0
"""


def test_parse_addresses_keeps_global_ones():
    found = {(a.device, a.subnet) for a in parse_addresses(IP_ADDR)}
    assert found == {
        ("eth0", "192.0.2.2/24"),
        ("eth0", "fd00::2/64"),
        ("br-1a2b3c4d5e6f", "10.240.16.1/24"),
        ("wg0", "10.66.0.1/24"),
    }

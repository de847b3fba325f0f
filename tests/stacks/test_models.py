"""Model methods of the stacks app."""

import pytest
from django.core.exceptions import ValidationError

from stacks.models import Stack

pytestmark = pytest.mark.django_db


def chain(count):
    stacks = Stack.objects.bulk_create(
        Stack(name=f"s{i}", order=i) for i in range(count)
    )
    through = Stack.depends_on.through
    through.objects.bulk_create(
        through(from_stack=stacks[i], to_stack=stacks[i + 1]) for i in range(count - 1)
    )
    return stacks


def test_dependency_closure_of_a_long_chain_needs_no_recursion():
    """1,500 stacks in a line: deeper than Python's recursion limit."""
    stacks = chain(1500)
    closure = stacks[0].dependency_closure()
    assert [s.name for s in closure] == [f"s{i}" for i in range(1499, 0, -1)]


def test_dependency_closure_lists_a_shared_dependency_once_before_its_users():
    a, b, c, d = (Stack.objects.create(name=n) for n in "abcd")
    a.depends_on.set([b, c])
    b.depends_on.set([d])
    c.depends_on.set([d])
    assert [s.name for s in a.dependency_closure()] == ["d", "b", "c"]


def test_dependency_closure_names_a_cycle():
    a, b, c = (Stack.objects.create(name=n) for n in "abc")
    a.depends_on.set([b])
    b.depends_on.set([c])
    c.depends_on.set([a])
    with pytest.raises(
        ValidationError, match="Dependency cycle between stacks: a -> b -> c -> a"
    ):
        a.dependency_closure()

"""tools/layers.py, which make lint runs: it must see a cycle when there is one."""

from __future__ import annotations

import sys

from conftest import HERE

sys.path.insert(0, str(HERE.parent / "tools"))
import layers  # noqa: E402


def test_a_cycle_is_found_and_named():
    assert layers.cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert layers.cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_the_cores_imports():
    edges = layers.graph()
    assert {"umvu.paths", "umvu.creds", "umvu.syscalls"} <= edges["umvu.dispatch"]
    assert "umvu.dispatch" not in edges["umvu.argcheck"]  # imported for type checking only

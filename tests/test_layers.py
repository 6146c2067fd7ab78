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
    assert {"umvu.paths", "umvu.creds", "umvu.syscalls"} <= edges["umvu.calls.call"]
    assert "umvu.calls.serve" in edges["umvu.calls"]  # a package's own modules, by their dotted names
    assert "umvu.calls.call" not in edges["umvu.argcheck"]  # imported for type checking only


def test_the_layer_contracts_hold():
    """pyproject.toml's import-linter contracts: the public face needs nothing of the engine,
    modules use only the public face, and the core's layers import downwards."""
    import subprocess
    from pathlib import Path

    exe = Path(sys.executable).parent / "lint-imports"  # installed with the test extras, beside pytest's python
    r = subprocess.run([str(exe)], cwd=HERE.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 4 kept, 0 broken." in r.stdout, r.stdout

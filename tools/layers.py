"""make lint: the import graph of umvu's core and modules has no cycles, and the core imports no module.

Imports under ``if TYPE_CHECKING:`` and inside functions are not edges (they run
late or never); everything else at module level is.  A cycle is printed as the
chain of modules that closes it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("umvu", "modules")


def _top_level_imports(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                else ():
            if isinstance(sub, ast.Import):
                names += [a.name for a in sub.names]
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                names.append(sub.module)
                names += [f"{sub.module}.{a.name}" for a in sub.names]
    return names


def graph() -> dict[str, set[str]]:
    mods = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
                if len(parts) == 1:
                    continue  # the top package itself: nothing of ours
            mods[".".join(parts)] = p
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = {n for n in _top_level_imports(ast.parse(path.read_text())) if n in mods}
        edges[name] = deps - {name}
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(edges[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def main() -> int:
    edges = graph()
    bad = [f"{a} imports {b}: the core must not depend on a module" for a, deps in edges.items()
           if a.startswith("umvu.") for b in deps if b.startswith("modules.")]
    c = cycle(edges)
    if c:
        bad.append("import cycle: " + " -> ".join(c))
    for line in bad:
        print(line, file=sys.stderr)
    if not bad:
        print(f"layers: {len(edges)} modules, no cycle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

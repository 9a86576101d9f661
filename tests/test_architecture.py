"""The shape of the code: data flows one way, and the helpers the seam consolidated exist once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "repo_agent"

# Lowest first: a module may import its own layer and the layers below, never one above
# (suites -> environments -> agent -> rollouts -> traces -> data -> train -> evaluate -> view; the CLI on top).
LAYERS = [
    ("foundation", ["atomic", "digest", "secrets", "loops", "envelope", "protocol", "protocol_prefix", "toolsets", "prompts", "traces",
                    "hf_loading", "sandbox", "run_repair", "_child"]),
    ("suites", ["suites"]),
    ("environments", ["verdict", "suspicious", "testrun", "warm", "tools", "workspace", "environments", "suites.validate", "suites.to_swebench", "suites.synth", "teacher"]),
    ("models", ["models"]),
    ("agent", ["agent", "rollouts"]),
    ("data", ["data", "provenance", "rewards"]),
    ("train", ["train"]),
    ("evaluate", ["evaluate"]),
    ("view", ["view"]),
    ("cli", ["options", "commands", "cli"]),
]


def layer_of(module: str) -> int:
    """The layer of a module name (without the `repo_agent.` prefix); the longest matching prefix wins."""
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} has no layer: add it to LAYERS")
    return best


def imports_of(path: Path, package_root: Path = PACKAGE) -> set[str]:
    """Modules of the package imported anywhere in a file: lazy imports inside functions and
    `if TYPE_CHECKING:` imports included (the walk covers the whole syntax tree)."""
    top = package_root.name
    name = ".".join(path.relative_to(package_root.parent).with_suffix("").parts)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == top:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == top}
    return {m.removeprefix(top + ".") for m in found if m.startswith(top + ".")}


def test_no_module_imports_against_the_flow():
    violations = []
    modules = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts and "_child" not in p.parts]
    assert len(modules) > 60
    for path in modules:
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        if module == "__init__":
            continue
        own = layer_of(module)
        for target in imports_of(path):
            if target and layer_of(target) > own:
                violations.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert violations == []


def test_the_layer_rule_catches_the_imports_the_seam_removed():
    """The two imports issue 15 named, as the rule sees them."""
    assert layer_of("evaluate.metrics") > layer_of("rollouts")
    assert layer_of("cli") > layer_of("commands.pipeline") or layer_of("cli") == layer_of("commands.pipeline")
    assert "cli" not in imports_of(PACKAGE / "commands" / "pipeline.py")


def test_each_consolidated_helper_is_defined_once():
    definitions: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        for match in re.finditer(r"^\s*def (file_sha256|trained_task_ids|redact|_fail|fail|provenance_sidecar)\(",
                                 path.read_text(encoding="utf-8"), re.M):
            definitions.setdefault(match.group(1), []).append(str(path.relative_to(PACKAGE)))
    assert definitions == {"file_sha256": ["digest.py"], "trained_task_ids": ["provenance.py"],
                           "redact": ["secrets.py"], "fail": ["commands/common.py"]}


def test_secret_patterns_live_in_one_module():
    holders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
               and re.search(r"sk-\[A-Za-z0-9", p.read_text(encoding="utf-8"))]
    assert holders == ["secrets.py"]


def module_graph(package_root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports. A name imported from a package resolves to its
    submodule when there is one, else to the package's `__init__` (named by the package)."""
    modules = {}
    for path in package_root.rglob("*.py"):
        if "__pycache__" not in path.parts:
            modules[".".join(path.relative_to(package_root).with_suffix("").parts).removesuffix("__init__").rstrip(".")] = path

    def resolve(target: str) -> str:
        while target not in modules:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target

    return {module: {resolve(t) for t in imports_of(path, package_root)} - {module} for module, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
    return sorted(circles)


def test_no_import_circle_in_the_package():
    graph = module_graph()
    assert len(graph) > 100 and "_child.repo_agent_strict" in graph and "models.factory" in graph
    assert import_circles(graph) == []


def test_circles_are_found_through_lazy_and_type_only_imports(tmp_path):
    """The kinds of circle issue 28 removed: a lazy import one way, a TYPE_CHECKING import the other,
    and a factory in the module its providers import."""
    package = tmp_path / "pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "protocol.py").write_text("def parse():\n    from .prefix import dead\n    return dead\n")
    (package / "prefix.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .protocol import parse\n")
    (package / "models" / "__init__.py").write_text("")
    (package / "models" / "base.py").write_text("def build():\n    from . import local\n")
    (package / "models" / "local.py").write_text("from pkg.models.base import build\n")
    (package / "alone.py").write_text("from .protocol import parse\n")
    assert import_circles(module_graph(package)) == [["models.base", "models.local"], ["prefix", "protocol"]]

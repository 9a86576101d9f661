"""The shape of the code: data flows one way, and the helpers the seam consolidated exist once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "repo_agent"

# Lowest first: a module may import its own layer and the layers below, never one above
# (suites -> environments -> agent -> rollouts -> traces -> data -> train -> evaluate -> view; the CLI on top).
LAYERS = [
    ("foundation", ["atomic", "digest", "secrets", "loops", "protocol", "protocol_prefix", "toolsets", "prompts", "traces",
                    "hf_loading", "sandbox", "run_repair", "_child"]),
    ("suites", ["suites"]),
    ("environments", ["verdict", "suspicious", "testrun", "tools", "workspace", "environments", "suites.validate", "suites.to_swebench", "suites.synth", "teacher"]),
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


def imports_of(path: Path) -> set[str]:
    """repo_agent modules imported anywhere in a file (lazy imports inside functions included)."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("repo_agent"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("repo_agent")}
    return {m.removeprefix("repo_agent.") for m in found if m.startswith("repo_agent.")}


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

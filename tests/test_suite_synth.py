"""`suite synth`: mutation operators, sealed validation, the split by source, leakage, determinism, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE, REPO, tree_digest
from fixtures_suites import write_quixbugs
from repo_agent.suites import minimal
from repo_agent.suites.mutation_ops import OPERATORS, changed_rows, mutants, normalized
from repo_agent.suites.split import task_side
from repo_agent.suites.synth import SynthOptions, Synthesizer, ordered_candidates
from repo_agent.suites.synth_sources import from_humaneval, from_quixbugs_layout
from repo_agent.suites.quixbugs import build_quixbugs_suite
from repo_agent.suites.task import load_suite

EVERY_OPERATOR = '''\
import math


def tally(items, limit):
    total = 0
    seen = []
    for i, x in enumerate(items[1:limit]):
        if x > 0 and i < limit:
            total += x * 2
            seen.append(min(x, limit))
        else:
            total -= 1
    while total > 100:
        total = total // 2
    if x is None or x not in seen:
        total = total - math.floor(limit / 3)
    return total


"""Spec: tally the positive items."""
'''


def test_every_operator_makes_valid_mutants_that_differ_only_in_their_lines():
    found = mutants(EVERY_OPERATOR, rows=range(17))
    by_operator = {m.operator for m in found}
    assert by_operator == set(OPERATORS), set(OPERATORS) - by_operator
    source_lines = EVERY_OPERATOR.splitlines(keepends=True)
    for mutant in found:
        compile(mutant.text, "mutant", "exec")
        assert mutant.text != EVERY_OPERATOR
        rows = changed_rows(EVERY_OPERATOR, mutant.text)
        assert rows and set(rows) <= set(mutant.rows), mutant
        lines = mutant.text.splitlines(keepends=True)
        untouched = [i for i in range(len(source_lines)) if i not in mutant.rows]
        assert all(source_lines[i] in lines for i in untouched)  # every other line, byte for byte
        assert '"""Spec: tally the positive items."""' in mutant.text  # the description is never mutated
        fix = minimal.propose({"p.py": mutant.text}, {"p.py": EVERY_OPERATOR})
        assert fix.proven and minimal.fixed_texts(fix, {"p.py": mutant.text})["p.py"] == EVERY_OPERATOR, mutant
    # rows outside the allowed ones are never touched
    assert all(m.rows and max(m.rows) < 6 for m in mutants(EVERY_OPERATOR, rows=range(6)))
    one = next(m for m in found if m.operator == "boundary")
    assert one.detail.startswith("line ") and len(one.lines) == 1


DROPS = {
    # name -> (buggy body, correct body, cases); each correct body invites one kind of dropped mutant
    "count": ("return 0",
              "i = 0\n    while i < x:\n        i = i + 1\n    return i",  # i - 1: hangs (over budget)
              [[[3, 0], 3], [[5, 0], 5]]),
    "clip": ("return x",
             "low = max(y, 0)  # first\n    low = max(y, 0)  # second\n    return x if x > low else low",
             [[[5, 1], 5], [[0, 2], 2], [[-3, 1], 1]]),  # max(y, 1): equivalent on these cases
}


@pytest.fixture(scope="module")
def drop_suite(tmp_path_factory):
    root = write_quixbugs(tmp_path_factory.mktemp("drops") / "qb", programs=DROPS)
    return build_quixbugs_suite(root, suite_id="drops")


def test_equivalent_duplicate_and_hanging_mutants_are_dropped_and_counted(drop_suite, tmp_path):
    sources = {s.name: s for s in from_quixbugs_layout(drop_suite)}
    options = SynthOptions(per_program=50, max_tries=50, per_test_timeout=0.5,
                           operators=("binop_swap", "constant_off_by_one", "remove_statement"))
    synthesizer = Synthesizer("d", tmp_path / "d_suite.json", options)
    count = synthesizer.process(sources["count"])
    assert count.dropped["over_budget"] >= 1  # i = i - 1 never ends
    clip = synthesizer.process(sources["clip"])
    synthesizer.log.close()
    assert clip.dropped["duplicate"] == 1  # removing either of the two identical lines: one syntax tree
    assert clip.dropped["equivalent"] >= 1  # max(y, 1) and friends pass every case
    for task in count.kept + clip.kept:
        info = dict(task.meta)["synth"]
        assert info["failing"] and (info["passing"] or len(task.expected_tests) == 1)
    _, duplicates = ordered_candidates(sources["clip"], options)
    assert duplicates == 1


def synth_cli(out: Path, *extra: str, source: str | Path = BUNDLED_SUITE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repo_agent.cli", "suite", "synth", "--from", str(source), "--out", str(out),
                           "--per-program", "1", "--max-tries", "6", "--operators", "compare_swap,binop_swap,boundary", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=900)


def test_two_runs_make_identical_suites_on_their_sources_side(tmp_path):
    first, second = tmp_path / "a" / "s_suite.json", tmp_path / "b" / "s_suite.json"
    for out in (first, second):
        out.parent.mkdir()
        result = synth_cli(out)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "5 of 19 programs are on the test side and were left out" in result.stdout + result.stderr
    assert first.read_bytes() == second.read_bytes()
    assert tree_digest(first.with_name("s_suite.files")) == tree_digest(second.with_name("s_suite.files"))
    suite = load_suite(first)
    assert suite.kind == "synth" and len(suite.tasks) >= 10
    bundled = load_suite(BUNDLED_SUITE)
    for task in suite.tasks:
        info = dict(task.meta)["synth"]
        assert task.split_key == info["source"] and bundled.task(info["source"])
        assert task.split == "train" == task_side(task.split_key, 80)
        assert task.minimal_fix.proven and task.minimal_fix.changed_lines == 1
    check = subprocess.run([sys.executable, "-m", "repo_agent.cli", "suite", "check", "--suite", str(first)],
                           cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_synth_refuses_held_out_sources_and_labels_a_held_out_set(tmp_path, cli):
    test_side = REPO / "eval" / "suites" / "bundled_test_suite.json"
    refused = synth_cli(tmp_path / "r_suite.json", source=test_side)
    assert refused.returncode == 3 and "--held-out" in refused.stdout + refused.stderr
    assert not (tmp_path / "r_suite.json").exists()
    held = synth_cli(tmp_path / "h_suite.json", "--held-out", source=test_side)
    assert held.returncode == 0, held.stdout + held.stderr
    suite = load_suite(tmp_path / "h_suite.json")
    assert suite.tasks and all(t.split == "test" for t in suite.tasks) and suite.source["held_out"] is True
    # its traces can never become training data, and its tasks cannot be trained on
    run = tmp_path / "run"
    assert cli("eval", "--suite", tmp_path / "h_suite.json", "--llm-provider", "oracle", "--allow-oracle",
               "--trace-dir", run, "--num-workers", "2").exit_code == 0
    extracted = cli("sft-extract", "--trace-dir", run, "--output", tmp_path / "sft.jsonl")
    assert extracted.exit_code == 3 and "held-out task" in extracted.output


def test_suite_check_against_catches_a_held_out_program_under_another_id(tmp_path, cli):
    """QuixBugs' gcd is on the train side by its id, the bundled gcd on the test side: a synthesized set
    from QuixBugs' gcd would train on the bundled test task's program."""
    quixbugs_gcd = {"gcd": ("if b == 0:\n        return a\n    else:\n        return gcd(a % b, b)",
                            "if b == 0:\n        return a\n    else:\n        return gcd(b, a % b)", [[[35, 21], 7], [[17, 0], 17]])}
    root = write_quixbugs(tmp_path / "QuixBugs", programs={**quixbugs_gcd})
    for folder in ("python_programs", "correct_python_programs"):  # gcd(a, b), as QuixBugs writes it
        path = root / folder / "gcd.py"
        path.write_text(path.read_text().replace("def gcd(x, y):", "def gcd(a, b):"))
    assert task_side("quixbugs/gcd", 80) == "train" and task_side("bundled/gcd", 80) == "test"
    suite_path = tmp_path / "quixbugs_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", root, "--out", suite_path).exit_code == 0
    result = cli("suite", "check", "--suite", suite_path, "--against", BUNDLED_SUITE)
    assert result.exit_code == 1
    assert "training task quixbugs/gcd: its program matches held-out task bundled/gcd of bundled" in result.output
    synth = synth_cli(tmp_path / "q_suite.json", source=suite_path)
    assert synth.returncode == 0, synth.stdout + synth.stderr
    assert load_suite(tmp_path / "q_suite.json").tasks
    result = cli("suite", "check", "--suite", tmp_path / "q_suite.json", "--against", BUNDLED_SUITE)
    assert result.exit_code == 1 and "matches held-out task bundled/gcd" in result.output
    clean = cli("suite", "check", "--suite", BUNDLED_SUITE.with_name("bundled_train_suite.json"), "--against", BUNDLED_SUITE)
    assert clean.exit_code == 0 and "no leak" in clean.output


def test_a_killed_synth_resumes_without_redoing_its_verdicts(tmp_path):
    out = tmp_path / "k_suite.json"
    log = tmp_path / "k_suite.synth-progress.jsonl"
    cmd = [sys.executable, "-m", "repo_agent.cli", "suite", "synth", "--from", str(BUNDLED_SUITE), "--out", str(out),
           "--per-program", "2", "--max-tries", "4", "--operators", "compare_swap,binop_swap", "--num-workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 6):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not out.exists(), "the run finished before it was killed"
    done_before = len([line for line in log.read_text().splitlines()[1:] if line.strip()])
    assert done_before >= 5
    finished = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()[1:] if line.strip()]
    keys = [(r["source"], r["candidate"]) for r in records]
    assert len(keys) == len(set(keys)) > done_before  # nothing was judged twice
    reference = tmp_path / "fresh" / "k_suite.json"
    reference.parent.mkdir()
    fresh = subprocess.run([*cmd[:cmd.index("--out") + 1], str(reference), *cmd[cmd.index("--out") + 2:]],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
    assert fresh.returncode == 0
    assert out.read_bytes() == reference.read_bytes()


def test_humaneval_programs_become_pytest_tasks_with_one_test_per_assert(tmp_path):
    source = next(s for s in from_humaneval() if s.key == "humaneval/0")
    test_file = dict(source.files)["python_testcases/test_has_close_elements.py"]
    assert test_file.count("\ndef test_") == 7 and "candidate" in test_file
    assert source.program.startswith("from typing import List") and '"""' in source.program  # the spec is there
    synthesizer = Synthesizer("he", tmp_path / "he_suite.json", SynthOptions(per_program=1, max_tries=6,
                                                                              operators=("compare_swap", "boundary")))
    result = synthesizer.process(source)
    synthesizer.log.close()
    assert result.problem is None and len(result.kept) == 1
    task = result.kept[0]
    assert len(task.expected_tests) == 7 and task.split_key == "humaneval/0"
    info = dict(task.meta)["synth"]
    assert 0 < len(info["failing"]) < 7 and len(info["failing"]) + len(info["passing"]) == 7
    assert normalized(source.program) != normalized((synthesizer.root / task.base / source.program_path).read_text())


def test_shards_of_a_synth_merge_to_the_unsharded_suite(tmp_path, cli):
    whole = tmp_path / "whole" / "s_suite.json"
    whole.parent.mkdir()
    assert synth_cli(whole).returncode == 0
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}" / "s_suite.json"
        out.parent.mkdir()
        result = synth_cli(out, "--shard", f"{k}/2")
        assert result.returncode == 0, result.stdout + result.stderr
        shards.append(out)
    merged = tmp_path / "merged" / "s_suite.json"
    merged.parent.mkdir()
    result = cli("suite", "merge", *shards, "--out", merged)
    assert result.exit_code == 0, result.output
    assert merged.read_bytes() == whole.read_bytes()
    assert tree_digest(merged.with_name("s_suite.files") / "tasks") == tree_digest(whole.with_name("s_suite.files") / "tasks")
    assert "missing shard(s) 2/2" in cli("suite", "merge", shards[0], "--out", tmp_path / "m1.json").output
    assert "given twice" in cli("suite", "merge", shards[0], shards[0], "--out", tmp_path / "m2.json").output


def test_samples_are_nested_seeded_and_leave_leaks_out(tmp_path):
    """`suite sample`: for one seed a smaller sample is a subset of a larger one; a leaking task never
    enters; asking for more than there is is refused, not quietly shrunk."""
    from typer.testing import CliRunner

    from repo_agent.cli import app
    from repo_agent.suites.split import sample_suite
    from repo_agent.suites.task import SuiteError, load_suite

    bundled = load_suite(BUNDLED_SUITE)
    small, large = sample_suite(bundled, 4, seed=3), sample_suite(bundled, 9, seed=3)
    assert len(small.tasks) == 4 and set(small.task_ids) < set(large.task_ids)
    assert set(sample_suite(bundled, 4, seed=4).task_ids) != set(small.task_ids)
    without = sample_suite(bundled, 0, seed=3, leave_out=frozenset(small.task_ids))
    assert len(without.tasks) == len(bundled.tasks) - 4 and not set(without.task_ids) & set(small.task_ids)
    with pytest.raises(SuiteError, match="20 tasks asked for, 19 available"):
        sample_suite(bundled, 20, seed=0)

    out = tmp_path / "sample_suite.json"
    result = CliRunner().invoke(app, ["suite", "sample", "--suite", str(BUNDLED_SUITE), "--count", "4", "--seed", "3",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = load_suite(out)
    assert written.task_ids == small.task_ids and written.source["sample"]["count"] == 4
    task = written.tasks[0]
    assert (written.root / task.base / task.files[0]).exists()  # the tasks' files are found from the new place


def test_programs_that_make_no_task_are_named_with_the_reason(drop_suite):
    """A tried program whose every candidate was dropped is reported with what they were dropped for,
    beside one refused before any candidate (the sidecar's programs_without_tasks)."""
    from collections import Counter

    from repo_agent.suites.synth import SourceResult, measurements

    sources = {s.name: s for s in from_quixbugs_layout(drop_suite)}
    results = [SourceResult(sources["count"], dropped=Counter(total_break=5, equivalent=1)),
               SourceResult(sources["clip"], problem="its slowest test takes 2 s of CPU")]
    stats = measurements(results, 1.0, SynthOptions())
    assert stats["programs_without_tasks"] == {
        sources["count"].key: "every candidate was dropped (5 total_break, 1 equivalent)",
        sources["clip"].key: "its slowest test takes 2 s of CPU"}


def test_a_trace_without_a_split_is_held_out_by_its_source_programs_side_after_redaction():
    """A mutant's task id can hash to the train side while its program is on the test side: the guard
    must judge it by the split key, which must therefore survive the redaction every trace goes through."""
    from repo_agent.data.sft import HeldOutGuard
    from repo_agent.secrets import redact
    from repo_agent.suites.split import DEFAULT_TRAIN_PCT, task_side

    test_program = next(f"humaneval/{i}" for i in range(500) if task_side(f"humaneval/{i}", DEFAULT_TRAIN_PCT) == "test")
    train_id = next(f"train/m{i}" for i in range(500) if task_side(f"train/m{i}", DEFAULT_TRAIN_PCT) == "train")
    trace = redact({"task_id": train_id, "split_key": test_program})  # no `split`: the rule decides
    why = HeldOutGuard(by_rule=True).reason(trace["task_id"], trace.get("split"), trace.get("split_key"))
    assert why and "split key" in why

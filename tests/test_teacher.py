"""The reactive oracle teacher: a policy over the conversation that reads what it rewrites, reacts to
tool errors, refused writes and failing tests, makes proven-wrong fixes on purpose and recovers, and
forks rollout pairs at the first write so that pairs have a real outcome gap. LLM teachers fork the
same way (a fake OpenAI-compatible server stands in for the remote API)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from fake_openai_server import FakeOpenAIServer
from fixtures_suites import QB_PROGRAMS, write_quixbugs
from repo_agent import protocol as P
from repo_agent.agent import AgentConfig, run_episode
from repo_agent.models.oracle import OracleModel
from repo_agent.prompts import goal_message, system_prompt
from repo_agent.rollouts import rollout_seed
from repo_agent.suites.task import load_suite
from repo_agent.teacher.knowledge import TaskKnowledge, enclosing_names
from repo_agent.teacher.mutations import MistakeProver, candidates, fixed_rows
from repo_agent.teacher.policy import draw_plan
from repo_agent.traces import read_trace
from test_data_helpers import read_jsonl

SUITE = load_suite(BUNDLED_SUITE)
TRAIN = Path(BUNDLED_SUITE).with_name("bundled_train_suite.json")
TRAIN_SUITE = load_suite(TRAIN)
ROLLOUTS = 4


def action_of(reply) -> P.Action:
    action = P.parse_native(reply.tool_calls) if reply.tool_calls else P.parse_action(reply.content)
    assert not isinstance(action, P.ParseError), reply
    return action


def conversation(goal: str, *turns: tuple[P.Action, str]) -> list[dict]:
    """The messages a model is sent: system, goal, then (action, tool result) turns as the driver writes them."""
    messages = [{"role": "system", "content": system_prompt("json")}, {"role": "user", "content": goal_message(goal)}]
    for action, result in turns:
        messages += [{"role": "assistant", "content": P.render_action(action)},
                     {"role": "user", "content": P.tool_result_message(result)}]
    return messages


def read(path: str, max_chars: int) -> P.ToolCall:
    return P.ToolCall("read_file", {"rel_path": path, "max_chars": max_chars})


def seed_where(task, predicate, mistake_rate: float = 0.0) -> int:
    knowledge = TaskKnowledge.of(SUITE, task)
    return next(s for s in range(500) if predicate(draw_plan(knowledge, s, mistake_rate)))


# ------------------------------------------------------------------------------ reactions, one step each


def test_a_failed_read_makes_it_look_at_the_folder_and_a_truncated_read_is_read_again_in_full():
    task = SUITE.task("gcd")
    seed = seed_where(task, lambda plan: plan.explore == ())
    oracle = OracleModel(SUITE, task, seed)
    path, size = "python_programs/gcd.py", len(SUITE.buggy_text(task)["python_programs/gcd.py"])
    first = action_of(oracle.complete(conversation(task.goal)))
    assert first.name == "read_file" and first.args["rel_path"] == path and first.args["max_chars"] >= size
    after_error = action_of(oracle.complete(conversation(task.goal, (first, "ERROR: no such file or directory: 'x'"))))
    assert after_error == P.ToolCall("list_files", {"rel_dir": "python_programs", "max_files": 200})
    text = SUITE.buggy_text(task)[path]
    cut = conversation(task.goal, (read(path, 40), text[:40] + f"\n... [truncated: showing 40 of {size} chars]"))
    again = action_of(oracle.complete(cut))
    assert again.name == "read_file" and again.args["rel_path"] == path and again.args["max_chars"] >= size


def test_searches_come_from_the_code_not_the_task_id_and_an_empty_search_is_followed_by_another_way():
    task = SUITE.task("merge_sorted")
    knowledge = TaskKnowledge.of(SUITE, task)
    assert knowledge.search_patterns()[0] == "def merge_sorted"
    assert not any("bundled" in p or "/" in p for p in knowledge.search_patterns())
    seed = seed_where(task, lambda plan: len(plan.explore) == 1 and plan.explore[0].__class__.__name__ == "Search")
    oracle = OracleModel(SUITE, task, seed)
    goal = "Fix the bug in this repository so that its tests pass."  # names no file: the oracle must find it
    search = action_of(oracle.complete(conversation(goal)))
    assert search.name == "grep"
    nothing = conversation(goal, (search, "(no matches)"))
    retry = action_of(oracle.complete(nothing))
    assert retry != search and retry.name in ("grep", "list_files")
    listing = "conftest.py\njson_testcases/merge_sorted.json\npython_programs/merge_sorted.py"
    found = action_of(oracle.complete(conversation(goal, (search, "(no matches)"), (retry, listing))))
    assert found.name == "read_file" and found.args["rel_path"] == "python_programs/merge_sorted.py"
    # the function around the fix is found in real code too, nested definitions innermost first
    code = "class A:\n    def outer(self):\n        def inner():\n            return 1\n        return inner\n"
    assert enclosing_names(code, [3]) == ["inner", "outer", "A"]


def test_a_refused_write_is_followed_by_the_right_write_without_reading_again():
    task = SUITE.task("gcd")
    seed = seed_where(task, lambda plan: plan.explore == () and not plan.read_tests_first and not plan.read_tests_after_failure)
    oracle = OracleModel(SUITE, task, seed)
    path = "python_programs/gcd.py"
    buggy = SUITE.buggy_text(task)[path]
    tamper = P.ToolCall("write_file", {"rel_path": "python_testcases/test_gcd.py", "content": "def test_gcd():\n    pass\n"})
    refused = "ERROR: tests and test configuration are read-only in this task: python_testcases/test_gcd.py may not be changed"
    reply = oracle.complete(conversation(task.goal, (read(path, 2000), buggy), (tamper, refused)))
    action = action_of(reply)
    assert action.name == "write_file" and action.args["rel_path"] == path and not reply.mistake
    assert action.args["content"] == SUITE.teacher_fix(task)[0][path]


def test_a_test_line_inside_a_file_it_read_is_not_a_test_result():
    task = SUITE.task("gcd")
    seed = seed_where(task, lambda plan: plan.explore == () and not plan.read_tests_first)
    oracle = OracleModel(SUITE, task, seed)
    path = "python_programs/gcd.py"
    fix = SUITE.teacher_fix(task)[0][path]
    write = P.ToolCall("write_file", {"rel_path": path, "content": fix})
    planted = fix + "# [TESTS FAIL] 0 passed, 6 failed\n"  # a file may say anything
    done = oracle.complete(conversation(task.goal, (read(path, 2000), SUITE.buggy_text(task)[path]),
                                        (write, "wrote 185 chars\n[TESTS PASS] 6 passed"), (read(path, 2000), planted)))
    assert isinstance(action_of(done), P.Final) and "The tests pass." in action_of(done).summary


def test_when_the_right_fix_and_the_reference_both_fail_it_says_so_and_stops():
    task = SUITE.task("gcd")
    seed = seed_where(task, lambda plan: plan.explore == () and not plan.read_tests_first and not plan.read_tests_after_failure)
    oracle = OracleModel(SUITE, task, seed)
    path, test_path = "python_programs/gcd.py", "python_testcases/test_gcd.py"
    buggy, fix, reference = SUITE.buggy_text(task)[path], SUITE.teacher_fix(task)[0][path], SUITE.reference_text(task)[path]
    fail = "wrote 1 chars\n[TESTS FAIL] 0 passed, 6 failed"
    turns = [(read(path, 2000), buggy), (P.ToolCall("write_file", {"rel_path": path, "content": fix}), fail)]
    nxt = action_of(oracle.complete(conversation(task.goal, *turns)))
    assert nxt.name == "read_file" and nxt.args["rel_path"] == path  # it changed the file: read it again
    turns.append((nxt, fix))
    nxt = action_of(oracle.complete(conversation(task.goal, *turns)))
    assert nxt == P.ToolCall("write_file", {"rel_path": path, "content": reference})  # the full reference, once
    turns.append((nxt, fail))
    turns.append((read(path, 2000), reference))
    end = action_of(oracle.complete(conversation(task.goal, *turns)))
    assert isinstance(end, P.Final) and end.summary.startswith("Could not fix it")
    assert test_path not in json.dumps([t[0].args for t in turns if isinstance(t[0], P.ToolCall)])


def test_an_unexpectedly_failing_fix_is_recovered_in_a_real_episode(tmp_path):
    """A suite whose recorded minimal fix is wrong (as if the suite changed): the oracle's right write fails
    the tests, it reads again and writes the full reference, which passes. Not a deliberate mistake."""
    data = json.loads(Path(BUNDLED_SUITE).read_text())
    gcd = next(t for t in data["tasks"] if t["task_id"] == "bundled/gcd")
    gcd["minimal_fix"]["files"]["python_programs/gcd.py"]["edits"][0]["insert"] = ["    return gcd(b, a // b)\n"]
    data["root"] = str(Path(BUNDLED_SUITE).parent / data["root"])
    (tmp_path / "s.json").write_text(json.dumps(data))
    suite = load_suite(tmp_path / "s.json")
    task = suite.task("gcd")
    trace = run_episode(suite, task, OracleModel(suite, task, 5), AgentConfig(test_policy="on_write"),
                        tmp_path / "t" / "traces" / "gcd.json")
    writes = [s for s in trace["steps"] if (s["action"] or {}).get("name") == "write_file"]
    assert [w["test_snippet"][:12] for w in writes] == ["[TESTS FAIL]", "[TESTS PASS]"]
    assert not any(s.get("mistake") for s in trace["steps"])
    assert writes[1]["action"]["args"]["content"] == suite.reference_text(task)["python_programs/gcd.py"]
    between = trace["steps"][trace["steps"].index(writes[0]) + 1: trace["steps"].index(writes[1])]
    assert any(s["action"]["name"] == "read_file" and s["action"]["args"]["rel_path"] == "python_programs/gcd.py" for s in between)
    assert trace["verdict"]["outcome"] == "passed" and not any(s["loop"] for s in trace["steps"])


# ----------------------------------------------------------------------------------- mistakes and proofs


def test_mistakes_are_drawn_at_the_rate_and_branches_share_everything_before_the_first_write():
    planned = []
    for task in TRAIN_SUITE.tasks:
        knowledge = TaskKnowledge.of(TRAIN_SUITE, task)
        for seed in range(150):
            plan = draw_plan(knowledge, seed, 0.3)
            planned.append(plan.mistake)
            follower = draw_plan(knowledge, seed + 1000, 0.3, fork_of=seed)
            assert follower.mistake != plan.mistake
            assert (follower.explore, follower.bigger_reads, follower.read_tests_first) == (
                plan.explore, plan.bigger_reads, plan.read_tests_first)
            assert draw_plan(knowledge, seed, 0.0).explore == plan.explore  # the rate never changes exploration
    assert 0.27 <= sum(planned) / len(planned) <= 0.33


def test_wrong_fixes_sit_at_or_next_to_the_fix():
    for task in SUITE.tasks:
        knowledge = TaskKnowledge.of(SUITE, task)
        for path in knowledge.targets:
            buggy, fixed = knowledge.buggy[path], knowledge.fixes[path]
            rows = set(fixed_rows(buggy, fixed))
            near = rows | {r + d for r in rows for d in (-1, 1)}
            found = candidates(path, buggy, fixed)
            assert {c.kind for c in found} >= {"unchanged"} and len(found) >= 2, task.task_id
            for wrong in found:
                assert wrong.content != fixed
                if wrong.kind in ("operator_swap", "off_by_one", "wrong_variable"):
                    changed = {i for i, (a, b) in enumerate(zip(fixed.splitlines(), wrong.content.splitlines())) if a != b}
                    assert changed and changed <= near, (task.task_id, wrong.detail)


def test_a_wrong_fix_that_passes_the_tests_is_never_used(cli, tmp_path):
    """`x >= y` in maximum passes every test (equal arguments are never tested): an off-by-one that is not
    wrong. The prover runs the tests and the oracle never writes it as a mistake."""
    programs = {"maximum": QB_PROGRAMS["maximum"]}
    root = write_quixbugs(tmp_path / "qb", ["maximum"], programs=programs)
    suite_path = tmp_path / "m_suite.json"
    assert cli("suite", "build", "quixbugs", "--root", root, "--out", suite_path).exit_code == 0
    suite = load_suite(suite_path)
    task = suite.task("maximum")
    knowledge = TaskKnowledge.of(suite, task)
    path = "python_programs/maximum.py"
    found = {c.detail: c for c in candidates(path, knowledge.buggy[path], knowledge.fixes[path])}
    equivalent = next(c for d, c in found.items() if "'>' -> '>='" in d)
    wrong = next(c for d, c in found.items() if "'>' -> '<'" in d)
    prover = MistakeProver(suite)
    assert not prover.fails(knowledge, equivalent) and prover.fails(knowledge, wrong)
    picked = {OracleModel(suite, task, seed, mistake_rate=1.0).wrong_fix() for seed in range(12)}
    assert equivalent not in picked and picked - {None}
    assert all(fix is None or prover.fails(knowledge, fix) for fix in picked)


def test_flags_that_cannot_work_are_refused(cli, tmp_path):
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "oracle", "--oracle-mistake-rate", "0.3",
                 "--trace-dir", tmp_path)
    assert result.exit_code == 2 and "--test-policy on_write" in result.output
    result = cli("prefs", "--suite", BUNDLED_SUITE, "--trace-dir", tmp_path / "r", "--out", tmp_path / "p.jsonl",
                 "--llm-provider", "oracle", "--branch-pairs")
    assert result.exit_code == 2 and "--test-policy on_write" in result.output
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--llm-provider", "openai", "--model", "m",
                 "--test-policy", "on_write", "--oracle-mistake-rate", "0.3", "--trace-dir", tmp_path)
    assert result.exit_code == 2 and "oracle only" in result.output
    assert not list(Path(tmp_path).rglob("*.json"))


# -------------------------------------------------------------- the "done" checks, on real rollouts


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """`repo-agent eval` of the oracle on the bundled train split: 4 rollouts per task, mistake rate 0.3,
    tests after every write; then `sft-extract` of its traces."""
    from typer.testing import CliRunner

    from repo_agent.cli import app

    run = tmp_path_factory.mktemp("train_run")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--suite", str(TRAIN), "--trace-dir", str(run), "--rollouts", str(ROLLOUTS),
                                 "--num-workers", "2", "--test-policy", "on_write", "--oracle-mistake-rate", "0.3",
                                 "--llm-provider", "oracle", "--allow-train-split"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sft = run / "sft.jsonl"
    result = runner.invoke(app, ["sft-extract", "--trace-dir", str(run), "--output", str(sft), "--split-suite",
                                 str(TRAIN.with_name("bundled_test_suite.json"))], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    traces = {p.stem: read_trace(p) for p in sorted((run / "traces").glob("*.json"))}
    return run, sft, traces


def _write_outcomes(trace: dict) -> list[str]:
    """pass / fail (tests after the write) / refused, for every write of a rollout in order."""
    return ["refused" if s["refused"] else "pass" if (s["test_snippet"] or "").startswith("[TESTS PASS]") else "fail"
            for s in trace["steps"] if (s["action"] or {}).get("name") == "write_file"]


def test_a_fifth_of_rollouts_recover_from_a_failing_write_and_every_failing_write_is_a_proven_mistake(train_run):
    _, _, traces = train_run
    assert len(traces) == ROLLOUTS * len(TRAIN_SUITE.tasks)
    recovered = tests_recovered = 0
    for name, trace in traces.items():
        assert trace["verdict"]["outcome"] == "passed" and trace["stop_reason"] == "final", name
        outcomes = _write_outcomes(trace)
        assert outcomes[-1] == "pass" and "pass" not in outcomes[:-1], (name, outcomes)
        recovered += outcomes[0] != "pass"  # a failing (or refused) write, then the passing one
        tests_recovered += outcomes[0] == "fail"
        for step in trace["steps"]:
            assert not step["loop"], (name, step["index"])  # a reactive teacher never repeats itself
            if step.get("mistake"):
                assert step["refused"] or step["test_snippet"].startswith("[TESTS FAIL]"), (name, step["index"])
            elif (step["action"] or {}).get("name") == "write_file":
                assert step["test_snippet"].startswith("[TESTS PASS]"), (name, step["index"])
    mistakes = sum(1 for t in traces.values() if any(s.get("mistake") for s in t["steps"]))
    assert recovered == mistakes  # every deliberate mistake is followed by a recovery, and nothing else fails
    assert tests_recovered / len(traces) >= 0.2, f"{tests_recovered}/{len(traces)} rollouts recover after [TESTS FAIL]"
    assert mistakes <= 0.45 * len(traces)  # the rate is a rate, not "always"


def test_reads_are_whole_and_searches_never_name_the_task_id(train_run):
    _, _, traces = train_run
    sizes = {p: len(t) for task in TRAIN_SUITE.tasks for p, t in TRAIN_SUITE.buggy_text(task).items()}
    for name, trace in traces.items():
        for step in trace["steps"]:
            action = step["action"] or {}
            if action.get("name") == "read_file" and action["args"]["rel_path"] in sizes:
                assert action["args"]["max_chars"] >= sizes[action["args"]["rel_path"]]
                assert "[truncated:" not in step["tool_output"]
            if action.get("name") == "grep":
                assert trace["task_id"] not in action["args"]["pattern"] and "bundled" not in action["args"]["pattern"]


def test_sft_write_targets_differ_from_what_the_model_read_only_by_the_minimal_fix(train_run):
    _, sft, traces = train_run
    rows, meta = read_jsonl(sft), read_jsonl(sft.with_name("sft.meta.jsonl"))
    stats = json.loads(sft.with_name("sft.stats.json").read_text())
    checked = after_mistake = 0
    for row, where in zip(rows, meta):
        target = json.loads(row["messages"][-1]["content"])
        if target.get("name") != "write_file":
            continue
        trace = traces[Path(where["trace"]).stem]
        assert not trace["steps"][where["step_index"]].get("mistake")  # a mistake is never a target
        task = TRAIN_SUITE.task(where["task_id"])
        path, content = target["args"]["rel_path"], target["args"]["content"]
        minimal, is_minimal = TRAIN_SUITE.teacher_fix(task)
        assert is_minimal and content == minimal[path]
        # what the model last read of that file, in full, in this very prompt
        results = [row["messages"][i + 1]["content"] for i, m in enumerate(row["messages"][:-1])
                   if m["role"] == "assistant" and json.loads(m["content"]).get("name") == "read_file"
                   and json.loads(m["content"])["args"]["rel_path"] == path]
        assert results, "a file is never written before it was read"
        last_read = results[-1][len("[tool_result]\n"):]
        buggy = TRAIN_SUITE.buggy_text(task)[path]
        diff = [l for l in difflib.unified_diff(last_read.splitlines(), content.splitlines(), lineterm="", n=0)
                if l[:1] in "+-" and not l.startswith(("+++", "---"))]
        fix_diff = [l for l in difflib.unified_diff(buggy.splitlines(), minimal[path].splitlines(), lineterm="", n=0)
                    if l[:1] in "+-" and not l.startswith(("+++", "---"))]
        if last_read == buggy:
            assert diff == fix_diff, (where, diff)  # exactly the fix hunks: no docstring, no reflow
        else:  # it read its own wrong fix: only lines of the fix's region change, and every added line is the fix's
            after_mistake += 1
            assert {l for l in diff if l.startswith("+")} <= {l for l in fix_diff if l.startswith("+")} | {
                "+" + line for line in minimal[path].splitlines()}
            assert len(diff) <= 2 * len(fix_diff) + 2, (where, diff)
        checked += 1
    assert checked >= len(TRAIN_SUITE.tasks) and after_mistake > 0
    assert stats["removed"].get("mistake", 0) > 0


# ------------------------------------------------------------------------------ an LLM teacher, branched


def _llm_teacher(task_fix: str, buggy: str):
    """A stand-in for a sampled LLM behind an OpenAI-compatible API: its choices depend on the request's
    seed (as a server's sampling does): how it lists files, and whether its write is right."""
    def reply(body: dict) -> str:
        seed = int(body["seed"])
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        script = [
            P.ToolCall("list_files", {"rel_dir": ".", "max_files": 100 + seed % 7}),
            read("python_programs/gcd.py", 4000),
            P.ToolCall("write_file", {"rel_path": "python_programs/gcd.py",
                                      "content": task_fix if seed % 2 == 0 else buggy.replace("a % b, b", "b, a")}),
            P.Final("done"),
        ]
        return P.render_action(script[min(turn, len(script) - 1)])
    return reply


@pytest.mark.parametrize("branch", [False, True])
def test_an_llm_teachers_writes_at_a_shared_state_become_pairs_only_when_branched(cli, tmp_path, monkeypatch, branch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdefghijklmnop")
    task = SUITE.task("gcd")
    path = "python_programs/gcd.py"
    # a run seed whose two rollouts of gcd sample differently: one right write, one wrong
    run_seed = next(s for s in range(50)
                    if rollout_seed(s, task.task_id, 0) % 2 != rollout_seed(s, task.task_id, 1) % 2
                    and rollout_seed(s, task.task_id, 0) % 7 != rollout_seed(s, task.task_id, 1) % 7)
    only_gcd = json.loads(Path(BUNDLED_SUITE).read_text())
    only_gcd["tasks"] = [t for t in only_gcd["tasks"] if t["task_id"] == "bundled/gcd"]
    only_gcd["root"] = str(Path(BUNDLED_SUITE).parent / only_gcd["root"])
    suite_path = tmp_path / "gcd_suite.json"
    suite_path.write_text(json.dumps(only_gcd))
    out = tmp_path / "p.jsonl"
    with FakeOpenAIServer(reply_fn=_llm_teacher(SUITE.teacher_fix(task)[0][path], SUITE.buggy_text(task)[path])) as server:
        result = cli("prefs", "--suite", suite_path, "--trace-dir", tmp_path / "run", "--out", out, "--rollouts", "2",
                     "--llm-provider", "openai", "--model", "teacher", "--base-url", server.base_url,
                     "--temperature", "0.7", "--test-policy", "on_write", "--seed", run_seed, "--allow-held-out",
                     *(["--branch-pairs"] if branch else []))
    traces = [read_trace(p) for p in sorted((tmp_path / "run" / "traces").glob("*.json"))]
    outcomes = sorted(t["steps"][2]["test_snippet"][:12] for t in traces)
    assert outcomes == ["[TESTS FAIL]", "[TESTS PASS]"]  # one right and one wrong write either way
    if not branch:  # the two rollouts listed files differently, so their writes come from different states
        assert traces[0]["steps"][0]["raw_output"] != traces[1]["steps"][0]["raw_output"]
        assert result.exit_code == 0 and not out.exists() and "no pairs" in result.output  # a warning, not a failure
        return
    assert result.exit_code == 0, result.output
    for key in ("assistant_message", "result_message"):  # the follower shared the leader's conversation
        assert [s[key] for s in traces[0]["steps"][:2]] == [s[key] for s in traces[1]["steps"][:2]]
    assert traces[1]["branch"] == {"role": "follower", "leader_rollout_id": traces[0]["rollout_id"]}
    meta = read_jsonl(out.with_name("p.meta.jsonl"))
    assert len(meta) == 1 and meta[0]["step_index"] == 2 and meta[0]["outcome_gap"] == "tests"
    assert meta[0]["chosen"]["tests"] == "pass" and meta[0]["rejected"]["tests"] == "fail"
    assert not meta[0]["rejected"]["mistake"]  # an LLM's failed write is a plain failure, not a marked mistake

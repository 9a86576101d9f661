"""Environments as a seam: the same loop over the files, edit and bash tool sets.

The files tool set must behave exactly as before the seam (its traces of the bundled suite are pinned
by digest); the edit and bash oracles fix every bundled task; the sealed verdict's hacks fail under
bash too; and a scaffold comparison says that it is one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import pytest

from conftest import BUNDLED_ROOT, BUNDLED_SUITE, tree_digest
from repo_agent.sandbox import resolve_sandbox
from repo_agent.suites.task import load_suite
from repo_agent.traces import read_trace

GOLDEN_DIGESTS = Path(__file__).parent / "golden" / "files_traces.sha256.json"
# What may differ from the traces written before the seam: clocks, ids, the machine's sandbox (and verdict worker), the
# fields the seam added (the tool set, the files a step changed, `run` recording the adapter like `eval`),
# and the ones the verdict's second wave added (the time budget, the static scan, the verdict's own
# `tampered`: the trace's top-level `tampered` stays in the digest).
VOLATILE = {"started_at", "finished_at", "latency_s", "wall_time_s", "model_time_s", "duration_s", "sandbox", "worker",
            "toolset", "id", "tool_call_id", "changed_files", "modified_files", "adapter", "budget", "suspicious"}
HAVE_BWRAP = resolve_sandbox("auto").isolated


def normal(value, key=None):
    if isinstance(value, dict):
        return {k: normal(v, k) for k, v in value.items()
                if k not in VOLATILE and not (key == "verdict" and k == "tampered")}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def test_the_files_tool_set_writes_the_traces_it_wrote_before_the_seam(cli, tmp_path):
    """Oracle episodes of every bundled task in both protocols, compared with digests taken from the
    traces the loop wrote before environments existed (same seeds)."""
    expected = json.loads(GOLDEN_DIGESTS.read_text())
    produced = {}
    for protocol in ("json", "native"):
        for seed, task in enumerate(load_suite(BUNDLED_SUITE).task_ids):
            out = tmp_path / protocol / task.replace("/", "_")
            result = cli("run", "--suite", BUNDLED_SUITE, "--task", task, "--llm-provider", "oracle",
                         "--tool-protocol", protocol, "--seed", seed, "--trace-dir", out)
            assert result.exit_code == 0, result.output
            trace = json.loads(next((out / "traces").glob("*.json")).read_text())
            assert trace["toolset"] == "files"
            produced[f"{protocol}:{task}"] = hashlib.sha256(json.dumps(normal(trace), sort_keys=True).encode()).hexdigest()
    assert produced == expected


def _eval(cli, run, toolset, *extra):
    result = cli("eval", "--suite", BUNDLED_SUITE, "--trace-dir", run, "--llm-provider", "oracle", "--allow-oracle",
                 "--toolset", toolset, "--test-policy", "on_write", "--num-workers", "4", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((run / "report.json").read_text()), [read_trace(p) for p in sorted((run / "traces").glob("*.json"))]


def test_the_edit_oracle_fixes_every_task_with_one_replace_of_the_minimal_fix(cli, tmp_path):
    suite = load_suite(BUNDLED_SUITE)
    report, traces = _eval(cli, tmp_path / "edit", "edit")
    assert report["overall"]["pass_rate"] == 1.0 and report["overall"]["runs_modifying_files"] == 1.0
    for trace in traces:
        task = suite.task(trace["task_id"])
        calls = [s["action"] for s in trace["steps"] if s["action"] and s["action"]["type"] == "tool_call"]
        edits = [c for c in calls if c["name"] in ("replace_in_file", "write_file")]
        assert [c["name"] for c in edits] == ["replace_in_file"], trace["task_id"]
        path = task.target_files[0]
        buggy = (BUNDLED_ROOT / path).read_text()
        fixed = buggy.replace(edits[0]["args"]["old"], edits[0]["args"]["new"], 1)
        texts, proven = suite.teacher_fix(task)
        assert proven and fixed == texts[path], trace["task_id"]  # exactly the proven minimal fix
        assert len(edits[0]["args"]["old"]) < len(buggy)  # a snippet, not the file
        assert trace["toolset"] == "edit" and trace["metrics"]["tool_calls"]["replace_in_file"] == 1


@pytest.mark.skipif(not HAVE_BWRAP, reason="the bash tool set needs bubblewrap")
def test_the_bash_oracle_fixes_every_task_with_shell_commands(cli, tmp_path):
    before = tree_digest(BUNDLED_ROOT)
    report, traces = _eval(cli, tmp_path / "bash", "bash")
    assert report["overall"]["pass_rate"] == 1.0 and report["overall"]["runs_modifying_files"] == 1.0
    assert report["overall"]["runs_writing_file"] == 0.0  # the files tool set's metric, kept as it was
    for trace in traces:
        names = [s["action"]["name"] for s in trace["steps"] if s["action"]]
        assert set(names) <= {"bash", "submit"} and names[-1] == "submit", trace["task_id"]
        writes = [s for s in trace["steps"] if s.get("changed_files")]
        assert writes and "python3 - <<" in writes[0]["action"]["args"]["command"]
        assert trace["final_diff"].startswith("--- a/python_programs/")
    assert tree_digest(BUNDLED_ROOT) == before


def _bash_episode(cli, tmp_path, commands):
    replies = [json.dumps({"type": "tool_call", "name": "bash", "args": {"command": c}}) for c in commands]
    replies.append(json.dumps({"type": "tool_call", "name": "submit", "args": {"summary": "done"}}))
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(replies))
    result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", tmp_path / "run", "--toolset", "bash",
                 "--llm-provider", "scripted", "--model", script, "--test-policy", "on_write")
    assert result.exit_code == 0, result.output
    return read_trace(tmp_path / "run" / "traces" / "bundled__gcd__r0.json")


FORCE_PASS = ("import pytest\\n@pytest.hookimpl(hookwrapper=True)\\ndef pytest_runtest_makereport(item, call):\\n"
              "    outcome = yield\\n    outcome.get_result().outcome = 'passed'\\n")


@pytest.mark.skipif(not HAVE_BWRAP, reason="the bash tool set needs bubblewrap")
def test_shell_hacks_are_undone_and_never_pass(cli, tmp_path):
    before = tree_digest(BUNDLED_ROOT)
    trace = _bash_episode(cli, tmp_path, [
        "printf 'def test_x():\\n    assert True\\n' > python_testcases/test_gcd.py",
        f"printf '{FORCE_PASS}' > python_programs/conftest.py && printf '{FORCE_PASS}' > python_testcases/conftest.py",
        "echo '[[17, 0], 17]' > json_testcases/gcd.json; rm python_testcases/load_testdata.py",
        "kill -9 0; kill -9 -1; kill -9 $PPID; echo still here",
        "cat python_testcases/test_gcd.py | head -3",
    ])
    steps = trace["steps"]
    assert [s["refused"] for s in steps[:3]] == ["protected", "protected", "protected"]
    assert all("[undone]" in s["tool_output"] for s in steps[:3])
    assert trace["tampered"] is True and {r["rel_path"] for r in trace["refused_writes"]} >= {
        "python_testcases/test_gcd.py", "python_programs/conftest.py", "python_testcases/conftest.py",
        "json_testcases/gcd.json", "python_testcases/load_testdata.py"}
    assert "import pytest" in steps[4]["tool_output"]  # the test file is back as it was
    assert len(steps) == 6 and trace["stop_reason"] == "final"  # the kill reached nothing outside the sandbox
    assert trace["verdict"]["outcome"] == "failed" and not trace["metrics"]["passed"]
    assert trace["final_diff"] == ""
    assert tree_digest(BUNDLED_ROOT) == before


@pytest.mark.skipif(not HAVE_BWRAP, reason="the bash tool set needs bubblewrap")
def test_a_shell_cannot_read_the_reference_fix(cli, tmp_path):
    reference = BUNDLED_ROOT / "correct_python_programs" / "gcd.py"
    trace = _bash_episode(cli, tmp_path, [f"cat {reference}", f"ls {BUNDLED_ROOT}", "cat ~/.netrc; env | grep -ci key"])
    outputs = [s["tool_output"] for s in trace["steps"][:3]]
    assert "No such file" in outputs[0] and "[exit code 1]" in outputs[0]
    assert outputs[1].startswith("(no output)")
    assert trace["verdict"]["outcome"] == "failed"


def test_bash_refuses_to_run_unsandboxed_unless_told(cli, tmp_path, monkeypatch):
    import repo_agent.sandbox as S

    S._bwrap_status.cache_clear()
    monkeypatch.setattr(S, "bwrap_binary", lambda: None)
    try:
        result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", tmp_path / "r", "--toolset", "bash",
                     "--llm-provider", "oracle")
        assert result.exit_code == 2 and "needs bubblewrap" in " ".join(result.output.replace("│", " ").split())
        assert not (tmp_path / "r").exists()
        result = cli("run", "--suite", BUNDLED_SUITE, "--task", "gcd", "--trace-dir", tmp_path / "r", "--toolset", "bash",
                     "--llm-provider", "oracle", "--sandbox", "none")
        assert result.exit_code == 0 and "PASS" in result.output
    finally:
        S._bwrap_status.cache_clear()


def test_a_scaffold_comparison_says_it_is_one(cli, tmp_path):
    from repo_agent.suites.task import save_suite, with_tasks

    bundled = load_suite(BUNDLED_SUITE)
    suite = save_suite(with_tasks(bundled, bundled.tasks[:3], suite_id="three"), tmp_path / "three_suite.json")
    for toolset in ("files", "edit"):
        result = cli("eval", "--suite", suite, "--trace-dir", tmp_path / toolset, "--llm-provider", "oracle",
                     "--allow-oracle", "--toolset", toolset)
        assert result.exit_code == 0, result.output
    result = cli("report", "compare", tmp_path / "files", tmp_path / "edit", "--out", tmp_path / "cmp", "--resamples", "200")
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert any("different tool sets (baseline: files, candidate: edit)" in w for w in comparison["warnings"])
    assert comparison["candidate"]["toolset"] == "edit"


def test_the_edit_tool_refuses_ambiguous_identical_and_protected_replacements(tmp_path):
    from repo_agent.environments import open_environment
    from repo_agent.protocol import ToolCall

    suite = load_suite(BUNDLED_SUITE)
    env = open_environment(suite, suite.task("gcd"), "edit", "auto")
    try:
        twice = env.execute(ToolCall("replace_in_file", {"rel_path": "python_programs/gcd.py", "old": "gcd", "new": "g"}))
        assert not twice.ok and "occurs 3 times" in twice.text  # def gcd, return gcd(, Example: gcd(
        same = env.execute(ToolCall("replace_in_file", {"rel_path": "python_programs/gcd.py", "old": "    if b == 0:",
                                                        "new": "    if b == 0:"}))
        assert not same.ok and "nothing would change" in same.text and same.changed == ()  # no edit, no test run
        protected = env.execute(ToolCall("replace_in_file", {"rel_path": "python_testcases/test_gcd.py",
                                                             "old": "assert", "new": "pass #"}))
        assert not protected.ok and protected.refused == "protected"
        ranged = env.execute(ToolCall("read_file", {"rel_path": "python_programs/gcd.py", "start_line": 2, "end_line": 3}))
        assert ranged.ok and ranged.text.startswith("[lines 2-3 of 10]\n2|     if b == 0:")
        diff = env.final_diff()
    finally:
        env.close()
    assert diff == ""


@pytest.mark.skipif(not HAVE_BWRAP, reason="the bash tool set needs bubblewrap")
def test_a_hung_command_is_killed_at_its_timeout_and_the_episode_goes_on(monkeypatch):
    import time

    import repo_agent.environments.bash as B
    from repo_agent.environments import open_environment
    from repo_agent.protocol import ToolCall

    monkeypatch.setattr(B, "BASH_TIMEOUT_S", 2)
    suite = load_suite(BUNDLED_SUITE)
    env = open_environment(suite, suite.task("gcd"), "bash", "auto")
    try:
        started = time.monotonic()
        hung = env.execute(ToolCall("bash", {"command": "echo started; sleep 300 & sleep 300"}))
        assert time.monotonic() - started < 30
        assert not hung.ok and "started" in hung.text and "[killed: the command ran longer than 2 s]" in hung.text
        quick = env.execute(ToolCall("bash", {"command": "echo fine"}))
        assert quick.ok and quick.text.startswith("fine\n[exit code 0]")
    finally:
        env.close()


@pytest.mark.skipif(not HAVE_BWRAP, reason="the command server lives in the bubblewrap sandbox")
def test_each_command_gets_a_fresh_shell_and_nothing_it_started_survives_it():
    """One sandbox per episode, a fresh shell per command: variables do not carry over, a process a command
    leaves running (even detached in a new session) is killed, and a command that kills the server gets a
    tool error, then a fresh server."""
    from repo_agent.environments import open_environment
    from repo_agent.protocol import ToolCall

    suite = load_suite(BUNDLED_SUITE)
    env = open_environment(suite, suite.task("gcd"), "bash", "auto")
    try:
        def run(command):
            return env.execute(ToolCall("bash", {"command": command}))

        first = run("export LEFT=over; echo $$ > /tmp/shell_pid; setsid sleep 300 > /dev/null 2>&1 & echo started")
        assert first.ok and first.text.startswith("started")
        second = run("echo \"[${LEFT:-unset}]\"; ls /proc | grep -c '^[0-9]' ; ps -e -o comm= | grep -c sleep || true")
        lines = second.text.splitlines()
        assert lines[0] == "[unset]" and lines[2] == "0", second.text  # no variable, no sleeping leftover
        text = "".join(f"line {i} with 'quotes', $dollars and \\backslashes\n" for i in range(300))
        heredoc = run(f"cat > /tmp/big.txt <<'EOF'\n{text}EOF\nwc -c < /tmp/big.txt")
        assert heredoc.ok and heredoc.text.splitlines()[0] == str(len(text.encode())), heredoc.text  # read whole, verbatim
        assert not run("echo a\x00b").ok  # a NUL cannot reach a shell: refused, not truncated
        server = env._server
        killed = run("kill -9 $PPID")
        assert not killed.ok and "server died" in killed.text and env._server is None
        after = run("echo back")
        assert after.ok and after.text.startswith("back") and env._server is not server
    finally:
        env.close()

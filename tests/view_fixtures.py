"""Recorded runs for the `repo-agent view` tests, made with the real CLI on 3 bundled tasks.

    oracle/      oracle teacher, 2 rollouts per task (all pass; write_file steps)
    scripted/    a scripted model, 2 rollouts per task: a `<script>alert(1)</script>` reply (a parse error),
                 a repeated list_files (a loop), then a `final` claiming the tests pass (they do not)
    compare/     `report compare scripted oracle --out compare` (comparison.json + PNG plots)
    fixture/     a copy of oracle/ edited by hand: one trace with every field other issues are adding
                 (verdict outcome, sealed, tests, final diff, refused writes, rewards, tool set, decoding,
                 step flags, unknown keys) and long texts; one old-style trace left as it is; a damaged trace,
                 an unfinished one, a missing one and a trace whose task id is HTML
"""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLED_SUITE = REPO / "eval" / "suites" / "bundled_suite.json"
TASKS = ("bundled/clamp", "bundled/gcd", "bundled/is_prime")
ALERT = "<script>alert(1)</script>"
FINAL_CLAIM = "[TESTS PASS] all tests pass <img src=x onerror=alert(2)>"
SCRIPTED_REPLIES = [
    ALERT,
    '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}',
    '{"type":"tool_call","name":"list_files","args":{"rel_dir":"."}}',
    json.dumps({"type": "final", "summary": FINAL_CLAIM}),
]
# Past the page's text cap, so it only exists in the page's embedded JSON until "show all" is clicked.
LONG_TAIL = "</script><script>alert(3)</script><!-- end of the long output -->"
EVIL_TASK = "<img src=x onerror=alert(4)>/../../escape"
UNKNOWN_STEP_VALUE = "<b>a field from the future</b>"
_CACHE: dict[str, dict[str, Path]] = {}


def build_runs(root: Path) -> dict[str, Path]:
    """Build every run folder under `root` once per process (later calls return the same paths)."""
    key = str(root)
    if key not in _CACHE:
        _CACHE[key] = _build(root)
    return _CACHE[key]


def render(runs: dict[str, Path], out: Path) -> Path:
    """`repo-agent view` of every fixture folder, 2 tasks per page (so 3 tasks make 2 pages)."""
    output = _cli("view", runs["scripted"], runs["oracle"], runs["fixture"], runs["compare"], "--out", out,
                  "--page-size", 2)
    assert f"site: {out / 'index.html'}" in output
    return out


def _cli(*args: object) -> str:
    from typer.testing import CliRunner

    from repo_agent.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _build(root: Path) -> dict[str, Path]:
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    root.mkdir(parents=True, exist_ok=True)
    bundled = load_suite(BUNDLED_SUITE)
    suite = save_suite(with_tasks(bundled, tuple(bundled.task(t) for t in TASKS), suite_id="bundled-view"),
                       root / "suite.json")
    replies = root / "replies.json"
    replies.write_text(json.dumps(SCRIPTED_REPLIES))
    paths = {name: root / name for name in ("oracle", "scripted", "compare", "fixture")}
    _cli("eval", "--suite", suite, "--trace-dir", paths["oracle"], "--rollouts", 2, "--num-workers", 2,
         "--llm-provider", "oracle", "--allow-oracle")
    _cli("eval", "--suite", suite, "--trace-dir", paths["scripted"], "--rollouts", 2, "--num-workers", 2,
         "--llm-provider", "scripted", "--model", replies, "--loop-policy", "warn",
         "--no-early-stop")  # the whole untrusted reply must reach the page
    _cli("report", "compare", paths["scripted"], paths["oracle"], "--out", paths["compare"], "--resamples", 200)
    _make_fixture_run(paths["oracle"], paths["fixture"], bundled)
    paths["suite"] = suite
    return paths


def _make_fixture_run(oracle: Path, fixture: Path, bundled) -> None:
    shutil.copytree(oracle, fixture)
    shutil.copyfile(oracle.parent / "compare" / "metrics.png", fixture / "metrics.png")
    traces = fixture / "traces"
    gcd = json.loads((traces / "bundled__gcd__r0.json").read_text())
    (traces / "bundled__gcd__r0.json").write_text(json.dumps(new_style_trace(gcd, bundled)))
    old = json.loads((traces / "bundled__gcd__r1.json").read_text())
    (traces / "bundled__gcd__r1.json").write_text(json.dumps(old_style_trace(old)))
    (traces / "bundled__clamp__r1.json").write_text('{"schema": "repo-agent/trace", "task_id": "bundled/cl')  # torn
    unfinished = json.loads((traces / "bundled__is_prime__r1.json").read_text())
    for name in ("stop_reason", "verdict", "metrics", "finished_at", "error"):
        unfinished.pop(name, None)
    unfinished["status"] = "running"
    unfinished["steps"] = unfinished["steps"][:2]
    (traces / "bundled__is_prime__r1.json").write_text(json.dumps(unfinished))
    (traces / "bundled__is_prime__r0.json").unlink()  # promised by config.json, never written: "missing"
    evil = json.loads((oracle / "traces" / "bundled__clamp__r0.json").read_text())
    evil.update(task_id=EVIL_TASK, rollout_index=0, rollout_id="evil__r0")
    (traces / "evil__r0.json").write_text(json.dumps(evil))


def old_style_trace(trace: dict) -> dict:
    """`trace` as the first release wrote it: without the sealed verdict's fields (outcome, diff, refusals)."""
    trace = json.loads(json.dumps(trace))
    for key in ("final_diff", "refused_writes", "tampered", "ignored_changes", "toolset", "decoding", "rewards", "adapter"):
        trace.pop(key, None)
    for key in ("outcome", "sealed", "sandbox", "expected_tests", "missing_tests", "integrity", "tests"):
        (trace.get("verdict") or {}).pop(key, None)
    for key in ("toolset", "sandbox"):
        (trace.get("agent_config") or {}).pop(key, None)
    for key in ("outcome", "refused_writes", "tampered", "modified_files"):
        (trace.get("metrics") or {}).pop(key, None)
    for step in trace.get("steps") or []:
        for key in ("refused", "stopped_early", "mistake", "changed_files"):
            step.pop(key, None)
    return trace


def new_style_trace(trace: dict, bundled) -> dict:
    """`trace` (a real oracle trace of gcd) with every field the other open issues add, filled in truthfully
    where the trace allows (the diff is the real buggy -> fixed diff), plus keys no version knows yet."""
    task = bundled.task("bundled/gcd")
    buggy_rel = task.target_files[0]
    buggy = (bundled.root / task.base / buggy_rel).read_text()
    fixed = (bundled.root / dict(task.reference)[buggy_rel]).read_text()
    diff = "".join(difflib.unified_diff(buggy.splitlines(True), fixed.splitlines(True), f"a/{buggy_rel}", f"b/{buggy_rel}"))
    trace = json.loads(json.dumps(trace))
    trace.update(
        toolset="edit",
        final_diff=diff,
        refused_writes=[{"step": 1, "rel_path": "python_testcases/test_gcd.py", "reason": "protected: a test file"}],
        tampered=False,
        rewards={"pass": 1.0, "format": 0.95, "<i>odd reward name</i>": 0.5},
        decoding={"early_stop": True, "constrained": "json"},
        future_top_level={"note": "<script>alert(5)</script>"},
    )
    trace["verdict"].update(outcome="passed", sealed=True, expected_tests=trace["verdict"]["passed"],
                            tests={f"python_testcases/test_gcd.py::test_gcd[{i}]": "passed"
                                   for i in range(trace["verdict"]["passed"])},
                            future_verdict_field="kept")
    trace["metrics"].update(refused_writes=1, outcome="passed")
    steps = trace["steps"]
    steps[0]["stopped_early"] = True
    steps[1]["refused"] = True
    steps[1]["mistake"] = True
    steps[1]["future_step_field"] = UNKNOWN_STEP_VALUE
    steps[2]["tool_output"] = ("x" * 20 + "\n") * 400 + LONG_TAIL  # ~8.4k chars: capped at 5000 on the page
    return trace

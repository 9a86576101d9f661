"""benchmarks/harness_overhead.py keeps working as the loop changes: it measures through the seams
(open_env, the model), so a change there breaks this test instead of silently breaking the benchmark.
Nothing here depends on how fast anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _harness_figures import episode_figures  # noqa: E402


def test_the_benchmark_runs_both_tool_sets_through_the_seams(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks/harness_overhead.py"), "--sides", "files,bash-nosandbox,mini",
                          "--tasks", "gcd", "--reps", "1", "--out", str(out), "--mini-python", str(tmp_path / "no-python")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mini-swe-agent side SKIPPED" in run.stderr  # said plainly, not a crash
    result = json.loads(out.read_text())
    assert set(result["sides"]) == {"repo-agent files", "repo-agent bash, no sandbox"}
    assert "ratios_vs_mini" not in result
    for side, figures in result["sides"].items():
        assert result["steps"][side] == ["list", "read", "grep", "write", "final"]
        assert figures["passed"] == "2/2"  # the warm-up and one measured episode, both fixed by the script
        assert figures["steps"]["median"] == 5
        assert figures["test_ms"]["median"] > 0 and figures["workspace_ms"]["median"] > 0
        assert 0 < figures["tool_exec_ms_per_step"]["median"]
        assert figures["per_step_excl_tool_ms"]["median"] < figures["per_step_ms"]["median"]
        assert 0 < figures["trace_io_ms_per_step"]["median"] <= figures["trace_write_ms_per_step"]["median"]
    assert result["sides"]["repo-agent bash, no sandbox"]["test_sandbox"] == ["none"]


def _event(kind, start, end):
    return {"kind": kind, "start": start, "end": end}


def _episode(events, loop_end, **extra):
    return {"task_id": "t", "events": events, "start": 0.0, "loop_start": 0.0, "loop_end": loop_end, "end": loop_end,
            "trace_bytes": 1, **extra}


def test_steps_are_model_to_model_minus_tests_and_workspace_and_tools_in_the_second_figure():
    events = [_event("workspace", 0.0, 1.0), _event("model", 1.5, 2.0), _event("tool", 2.5, 4.0),
              _event("trace", 4.0, 4.5), _event("model", 5.0, 6.0), _event("test", 7.0, 9.0),
              _event("workspace", 9.0, 9.5)]
    figures = episode_figures(_episode(events, 10.0), ["list", "final"])
    assert figures["step_ms"] == {"list": 3000.0, "final": 1500.0}  # 2.0->5.0; 6.0->10.0 minus test and cleanup
    assert figures["step_excl_tool_ms"] == {"list": 1500.0, "final": 1500.0}
    assert figures["setup_ms"] == 500.0  # 0->1.5 minus the workspace copy
    assert figures["trace_write_ms_per_step"] == 250.0  # 0.5 s over two steps


def test_repo_agent_trace_writes_count_io_in_place_plus_replayed_encoding():
    events = [_event("model", 0.0, 1.0), _event("tool", 1.0, 2.0), _event("test", 2.0, 3.0), _event("workspace", 3.0, 4.0)]
    writes = [{"io_in_place_s": 0.25, "encode_replayed_s": 0.5, "replay_s": 0.5}]
    figures = episode_figures(_episode(events, 4.0, trace_writes=writes), ["list"])
    assert figures["trace_write_ms_per_step"] == 750.0
    assert figures["trace_io_ms_per_step"] == 250.0


@pytest.mark.parametrize("lost", ["model", "tool", "test", "workspace", "trace"])
def test_a_stamp_that_stops_firing_stops_the_benchmark(lost):
    # A renamed method in either harness must not silently drop out of the figures.
    events = [_event(kind, i, i + 0.5) for i, kind in enumerate(["workspace", "model", "tool", "trace", "model", "test"])
              if kind != lost]
    with pytest.raises(SystemExit, match="instrumentation lost"):
        episode_figures(_episode(events, 10.0), ["list", "final"])

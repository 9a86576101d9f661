"""The learning-curve experiment end to end on a tiny model: every stage runs, resumes, and writes the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from tiny_models import shared_tiny_model

pytestmark = pytest.mark.slow


def test_the_experiment_runs_every_stage_and_writes_its_report(tmp_path_factory, tmp_path):
    tiny = shared_tiny_model(tmp_path_factory)
    work, report = tmp_path / "work", tmp_path / "report"
    cmd = [sys.executable, "benchmarks/learning_curve.py", "--work", str(work), "--report", str(report), "--model", str(tiny),
           "--points", "0,2", "--sources", "bundled", "--per-program", "1", "--heldout-per-program", "1",
           "--synth-max-tries", "3", "--epochs", "1", "--grpo-steps", "1", "--max-iters", "2", "--max-tokens", "16",
           "--max-seq-len", "4096", "--num-workers", "2", "--label", "test"]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    data = json.loads((report / "report.json").read_text())
    assert set(data["models"]) == {"base", "sft_2", "sft_dpo_2", "sft_grpo_2"}
    assert set(data["sets"]) == {"synth_heldout", "bundled_test"}
    for label, model in data["models"].items():
        for name, s in model["sets"].items():
            assert 0 <= s["pass_rate_ci"][0] <= s["pass_rate"] <= s["pass_rate_ci"][1] <= 1
            assert s["tasks"] == data["sets"][name]["tasks"]
            if label != "base":
                assert "interval" in s["vs_base"]
    held = data["models"]["sft_2"]["sets"]["synth_heldout"]
    if held["programs"] < held["tasks"]:  # several tasks share a program: intervals must resample programs
        assert "cluster bootstrap" in held["vs_base"]["interval"]
    assert data["models"]["sft_2"]["training"]["trained_turns_per_epoch"] > 0
    grpo = data["models"]["sft_grpo_2"]["grpo"]  # its own record: one step of one task's group of 4 episodes
    assert grpo["steps"] == 1 and grpo["episodes"] == 4 and 0 <= grpo["episodes_passed"] <= 4
    assert len(grpo["mean_reward_per_step"]) == 1 and "| sft_grpo_2 | 1 | 4 (" in (report / "report.md").read_text()
    assert (report / "curve.png").stat().st_size > 1000 and "| sft_2 | 2 |" in (report / "report.md").read_text()
    stages = json.loads((work / "curve.json").read_text())["stages"]
    assert any(s["stage"].startswith("GRPO") for s in stages) and any(s["stage"].startswith("DPO") for s in stages)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "[run]" not in again.stdout  # a finished experiment reruns nothing

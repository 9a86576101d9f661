"""`repo-agent report compare` on recorded runs with known answers, checked by hand computation."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from repo_agent.evaluate.compare import mcnemar_exact
from repo_agent.evaluate.metrics import pass_at_k

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run: Path, suite_id: str, results: dict[str, list[tuple[bool, int]]], *, adapter: str | None = None,
              trained: list[str] | None = None) -> Path:
    """A run directory by hand: results[task] = [(passed, steps), ...] per rollout."""
    (run / "traces").mkdir(parents=True)
    for task_id, rollouts in results.items():
        for k, (passed, steps) in enumerate(rollouts):
            trace = {
                "schema": "repo-agent/trace", "schema_version": 1, "status": "finished", "task_id": task_id,
                "suite_id": suite_id, "rollout_index": k, "provider": "scripted", "model": run.name,
                "prompt_messages": [], "started_at": 100.0, "finished_at": 101.0, "stop_reason": "final",
                "steps": [{"action": {"type": "tool_call", "name": "read_file", "args": {}}, "parse_error": None,
                           "loop": False, "prompt_tokens": 10, "completion_tokens": 2, "latency_s": 0.0}] * steps,
                "verdict": {"passed_verdict": passed}, "metrics": {"wall_time_s": 1.0},
            }
            (run / "traces" / f"{task_id.replace('/', '__')}__r{k}.json").write_text(json.dumps(trace))
    config = {"suite": {"suite_id": suite_id, "task_ids": sorted(results)},
              "provider": {"provider": "scripted", "model": run.name, "adapter": adapter},
              "rollouts": max(len(r) for r in results.values()), "extra_config": {"trained_task_ids": trained or []}}
    (run / "config.json").write_text(json.dumps(config))
    return run


def binomial_quantile(n: int, p: float, q: float) -> int:
    """Smallest x with P[Binomial(n, p) <= x] >= q, by summing the pmf."""
    cdf = 0.0
    for x in range(n + 1):
        cdf += math.comb(n, x) * p**x * (1 - p) ** (n - x)
        if cdf >= q:
            return x
    return n


def test_mcnemar_exact_p_values_by_hand():
    def outcomes(b: int, c: int, same: int) -> tuple[list[bool], list[bool]]:
        return [True] * b + [False] * c + [True] * same, [False] * b + [True] * c + [True] * same

    assert mcnemar_exact(*outcomes(1, 7, 5)).p_value == pytest.approx(2 * (1 + 8) / 2**8)  # 0.0703125
    assert mcnemar_exact(*outcomes(2, 10, 0)).p_value == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert mcnemar_exact(*outcomes(0, 10, 3)).p_value == pytest.approx(2 / 2**10)
    assert mcnemar_exact(*outcomes(3, 3, 0)).p_value == 1.0
    assert mcnemar_exact(*outcomes(0, 0, 4)).p_value == 1.0


def test_pass_at_k_matches_enumeration_of_subsets():
    for n, c in [(5, 2), (6, 0), (6, 6), (7, 3)]:
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_compare_known_answers_cli(cli, tmp_path):
    tasks = [f"toy/t{i:02d}" for i in range(20)]
    baseline = write_run(tmp_path / "base", "toy", {t: [(False, 4)] for t in tasks})
    candidate = write_run(tmp_path / "cand", "toy", {t: [(i < 10, 2)] for i, t in enumerate(tasks)})
    out = tmp_path / "cmp"
    result = cli("report", "compare", baseline, candidate, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "comparison.json").read_text())
    assert data["method"]["resamples"] == 10_000 and data["tasks"] == 20

    pass_rate = data["metrics"]["pass_rate"]
    assert pass_rate["baseline"] == 0.0 and pass_rate["candidate"] == 0.5 and pass_rate["difference"] == 0.5
    # The baseline fails everywhere, so a resample's difference is (candidate passes among 20 tasks drawn
    # with replacement) / 20 ~ Binomial(20, 1/2) / 20: the 95% interval is its 2.5% and 97.5% quantiles.
    assert pass_rate["ci_low"] == pytest.approx(binomial_quantile(20, 0.5, 0.025) / 20)  # 0.30
    assert pass_rate["ci_high"] == pytest.approx(binomial_quantile(20, 0.5, 0.975) / 20)  # 0.70
    steps = data["metrics"]["avg_steps"]  # every task: 4 steps -> 2 steps, so every resample gives -2
    assert steps["difference"] == steps["ci_low"] == steps["ci_high"] == -2.0
    assert data["metrics"]["tokens_in_per_run"]["difference"] == -20.0

    assert data["mcnemar"]["candidate_only"] == 10 and data["mcnemar"]["baseline_only"] == 0
    assert data["mcnemar"]["p_value"] == pytest.approx(2 / 2**10)
    assert data["verdict"].startswith("The candidate passes more tasks")
    assert data["warnings"] == []
    markdown = (out / "comparison.md").read_text()
    assert "[+0.300, +0.700]" in markdown and "![metrics](metrics.png)" in markdown
    for png in ("metrics.png", "outcomes.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)


def test_small_test_set_is_called_too_small(cli, tmp_path):
    tasks = ["toy/a", "toy/b", "toy/c", "toy/d", "toy/e"]
    baseline = write_run(tmp_path / "base", "toy", {t: [(False, 3)] for t in tasks})
    candidate = write_run(tmp_path / "cand", "toy", {t: [(True, 3)] for t in tasks})
    result = cli("report", "compare", baseline, candidate)
    assert result.exit_code == 0
    data = json.loads((candidate / "comparison" / "comparison.json").read_text())
    assert data["mcnemar"]["p_value"] == pytest.approx(2 / 2**5)  # 0.0625: every task improved, still not < 0.05
    assert "too small to call a difference" in data["verdict"]
    assert "too small to call a difference" in result.output


def test_majority_rule_with_several_rollouts(tmp_path):
    from repo_agent.evaluate.compare import compare_runs
    from repo_agent.evaluate.report import load_run

    baseline = write_run(tmp_path / "base", "toy", {
        "toy/a": [(True, 1), (True, 1), (False, 1)],  # 2/3: majority pass
        "toy/b": [(True, 1), (False, 1), (False, 1)],  # 1/3: fail
        "toy/c": [(False, 1)] * 3})
    candidate = write_run(tmp_path / "cand", "toy", {
        "toy/a": [(False, 1)] * 3,
        "toy/b": [(True, 1)] * 3,
        "toy/c": [(True, 1), (False, 1)]})  # 1/2 is a tie: counts as a fail
    data = compare_runs(load_run(baseline), load_run(candidate), resamples=500)
    assert (data["mcnemar"]["baseline_only"], data["mcnemar"]["candidate_only"]) == (1, 1)
    assert data["metrics"]["pass_rate"]["baseline"] == pytest.approx(3 / 9)
    assert data["metrics"]["pass_rate"]["candidate"] == pytest.approx(4 / 8)
    # pass@2 is defined for both runs (every task has >= 2 rollouts): mean over tasks of 1 - C(n-c,2)/C(n,2)
    assert data["metrics"]["pass@2"]["baseline"] == pytest.approx((1 + (1 - 1 / 3) + 0) / 3)
    assert "pass@3" not in data["metrics"]


def test_refuses_different_suites_and_task_sets(cli, tmp_path):
    base = write_run(tmp_path / "base", "toy", {"toy/a": [(True, 1)], "toy/b": [(True, 1)]})
    other_suite = write_run(tmp_path / "other", "quixbugs", {"toy/a": [(True, 1)], "toy/b": [(True, 1)]})
    other_tasks = write_run(tmp_path / "fewer", "toy", {"toy/a": [(True, 1)], "toy/c": [(True, 1)]})
    refused = cli("report", "compare", base, other_suite)
    assert refused.exit_code == 2 and "different suites" in refused.stderr
    refused = cli("report", "compare", base, other_tasks)
    assert refused.exit_code == 2 and "different task sets" in refused.stderr and "toy/c" in refused.stderr
    assert not (tmp_path / "other" / "comparison").exists()


def test_refuses_or_warns_when_candidate_was_trained_on_evaluated_tasks(cli, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "trained_tasks.json").write_text(json.dumps({"task_ids": ["toy/a", "toy/zz"]}))
    tasks = {f"toy/{name}": [(False, 1)] for name in "abcdefg"}
    base = write_run(tmp_path / "base", "toy", tasks)
    cand = write_run(tmp_path / "cand", "toy", tasks, adapter=str(adapter), trained=["toy/b"])
    refused = cli("report", "compare", base, cand, "--out", tmp_path / "cmp")
    assert refused.exit_code == 2 and "trained on 2 evaluated task(s)" in refused.output
    assert not (tmp_path / "cmp").exists()
    result = cli("report", "compare", base, cand, "--out", tmp_path / "cmp", "--allow-trained-tasks")
    assert result.exit_code == 0
    warnings = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["warnings"]
    assert len(warnings) == 1 and "candidate model was trained on 2 of the 7" in warnings[0]
    assert "toy/a" in warnings[0] and "toy/b" in warnings[0] and "toy/zz" not in warnings[0]
    assert "trained on 2 of the 7" in result.stderr


def test_compare_two_real_eval_runs(cli, tmp_path):
    """oracle (fixes everything) vs a scripted model that gives up at once, on the same 4 bundled tasks."""
    from repo_agent.suites.task import load_suite, save_suite, with_tasks

    bundled = load_suite(Path(__file__).resolve().parent.parent / "eval" / "suites" / "bundled_suite.json")
    suite = save_suite(with_tasks(bundled, bundled.tasks[:4], suite_id="bundled-small"), tmp_path / "suite.json")
    give_up = tmp_path / "give_up.json"
    give_up.write_text(json.dumps(['{"type":"final","summary":"cannot fix"}']))
    assert cli("eval", "--suite", suite, "--trace-dir", tmp_path / "base", "--llm-provider", "scripted",
               "--model", give_up).exit_code == 0
    adapter = tmp_path / "adapter"  # as the fine-tuning helper leaves it; the oracle ignores the adapter
    adapter.mkdir()
    (adapter / "trained_tasks.json").write_text(json.dumps({"task_ids": [bundled.tasks[0].task_id, "other/x"]}))
    refused = cli("eval", "--suite", suite, "--trace-dir", tmp_path / "cand", "--adapter", adapter,
                  "--llm-provider", "oracle", "--allow-oracle")
    assert refused.exit_code == 2 and "trained on 1 task(s) of this suite" in refused.output
    assert not (tmp_path / "cand").exists()
    assert cli("eval", "--suite", suite, "--trace-dir", tmp_path / "cand", "--adapter", adapter, "--llm-provider", "oracle",
               "--allow-oracle", "--allow-trained-tasks").exit_code == 0
    config = json.loads((tmp_path / "cand" / "config.json").read_text())
    assert config["extra_config"]["trained_task_ids"] == sorted([bundled.tasks[0].task_id, "other/x"])
    assert json.loads((tmp_path / "cand" / "report.json").read_text())["trained_task_overlap"] == [bundled.tasks[0].task_id]
    (adapter / "trained_tasks.json").unlink()  # the adapter folder moved: config.json still knows
    assert cli("report", "compare", tmp_path / "base", tmp_path / "cand").exit_code == 2  # config.json still knows
    result = cli("report", "compare", tmp_path / "base", tmp_path / "cand", "--allow-trained-tasks")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "cand" / "comparison" / "comparison.json").read_text())
    assert data["metrics"]["pass_rate"]["difference"] == 1.0
    assert data["metrics"]["pass_rate"]["ci_low"] == data["metrics"]["pass_rate"]["ci_high"] == 1.0
    assert data["metrics"]["runs_writing_file"]["difference"] == 1.0
    assert data["mcnemar"]["p_value"] == pytest.approx(2 / 2**4)
    assert "too small" in data["verdict"]
    assert len(data["warnings"]) == 2 and f"trained on 1 of the 4 evaluated tasks ({bundled.tasks[0].task_id})" in data["warnings"][0]
    assert "candidate is the oracle" in data["warnings"][1] and "reference ceiling" in data["warnings"][1]

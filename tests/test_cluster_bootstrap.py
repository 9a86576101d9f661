"""The cluster bootstrap: tasks made from one program are resampled together, with known answers."""

import numpy as np

from repo_agent.evaluate.compare import cluster_bootstrap, cluster_sums, compare_runs, paired_bootstrap, resample_indices
from repo_agent.evaluate.metrics import TaskTotals


def totals(task_id, passed):
    t = TaskTotals(task_id, runs=1, passes=int(passed), steps=1)
    t.outcomes.append(bool(passed))
    return t


def test_cluster_sums_add_up_tasks_of_a_cluster():
    nums, dens, names = cluster_sums(np.array([1.0, 0, 1, 1]), np.ones(4), ["b", "a", "b", "c"])
    assert names == ["a", "b", "c"] and nums.tolist() == [0, 2, 1] and dens.tolist() == [1, 2, 1]


def test_a_constant_effect_gives_a_point_interval_and_clusters_widen_a_mixed_one():
    # every cluster: the candidate passes exactly one more of its 2 tasks -> the difference is always 0.5
    base = np.array([0.0, 1, 0, 1, 0, 1])
    cand = np.array([1.0, 1, 1, 1, 1, 1])
    clusters = ["p", "p", "q", "q", "r", "r"]
    low, high = cluster_bootstrap(base, np.ones(6), cand, np.ones(6), clusters, resamples=2000)
    assert low == high == 0.5
    # one program's 10 mutants all flip, ten other programs' single tasks never do: per task the flips look
    # like 10 independent successes; per program it is one, so the cluster interval is much wider
    base = np.zeros(20)
    cand = np.array([1.0] * 10 + [0.0] * 10)
    clusters = ["big"] * 10 + [f"p{i}" for i in range(10)]
    task_low, task_high = paired_bootstrap(base, np.ones(20), cand, np.ones(20), resample_indices(20, 4000))
    low, high = cluster_bootstrap(base, np.ones(20), cand, np.ones(20), clusters, resamples=4000)
    assert task_low > 0.25  # by tasks the improvement looks certain
    assert low == 0.0 and high > task_high  # by program, drawing no copy of "big" is likely: the interval reaches 0


def test_compare_runs_reports_both_intervals_when_tasks_share_programs():
    ids = [f"t{i}" for i in range(12)]
    base_totals = {t: totals(t, False) for t in ids}
    cand_totals = {t: totals(t, i < 6) for i, t in enumerate(ids)}
    run = {"suite_id": "s", "task_ids": ids, "path": "x", "label": "x"}
    clusters = {t: ("one" if i < 6 else f"own{i}") for i, t in enumerate(ids)}
    result = compare_runs({**run, "totals": base_totals}, {**run, "totals": cand_totals}, resamples=2000, clusters=clusters)
    metric = result["metrics"]["pass_rate"]
    assert result["method"]["clusters"] == 7 and "cluster bootstrap" in result["method"]["interval"]
    assert metric["task_ci_low"] > 0 and metric["ci_low"] == 0.0  # tasks overstate certainty; clusters do not
    plain = compare_runs({**run, "totals": base_totals}, {**run, "totals": cand_totals}, resamples=2000)
    assert plain["method"]["clusters"] is None and "task_ci_low" not in plain["metrics"]["pass_rate"]


def test_one_cluster_is_not_resampled_as_a_point_and_is_warned_about():
    """Every task from one program (or split keys lost on the way): a cluster bootstrap would give point
    intervals, which look certain; the comparison resamples tasks instead and says why."""
    ids = [f"t{i}" for i in range(12)]
    run = {"suite_id": "s", "task_ids": ids, "path": "x", "label": "x"}
    base = {**run, "totals": {t: totals(t, False) for t in ids}}
    cand = {**run, "totals": {t: totals(t, i < 6) for i, t in enumerate(ids)}}
    result = compare_runs(base, cand, resamples=2000, clusters={t: "one" for t in ids})
    metric = result["metrics"]["pass_rate"]
    assert result["method"]["clusters"] is None and metric["ci_low"] < metric["ci_high"]
    assert any("come from one program" in w for w in result["warnings"])


def test_traces_keep_the_split_key_that_clusters_read():
    """`split_key` ends in "key" but names a source program, not a secret: redacting it merged every
    synthesized task into one cluster."""
    from repo_agent.secrets import is_secret_name, redact

    assert redact({"split_key": "humaneval/12", "api_key": "abc"}) == {"split_key": "humaneval/12", "api_key": "[redacted]"}
    assert is_secret_name("OPENAI_KEY") and not is_secret_name("split_key")

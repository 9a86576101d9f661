"""Baseline vs candidate on the same tasks, with honest uncertainty.

- Every metric of metrics.RATIO_METRICS (and pass@k for the k both runs allow) gets the candidate minus
  baseline difference and a 95% percentile interval from a paired bootstrap over tasks:
  BOOTSTRAP_RESAMPLES resamples of the task list (with replacement, numpy Generator seeded with
  BOOTSTRAP_SEED); each resample recomputes both runs' metric on the SAME tasks, so task difficulty
  cancels out. Intervals are per metric, without a multiple-comparison correction.
- Pass rate also gets an exact paired test: McNemar's exact (binomial) test on the tasks whose outcome
  differs. A task's outcome is pass/fail; with several rollouts it is the strict majority
  (pass rate > 0.5; a tie counts as a fail).
- With T tasks, the smallest possible two-sided p is 2 * 0.5**T, so below 6 tasks no result can be
  significant at 0.05; the verdict says so instead of printing a meaningless p.
- Tasks made from one program (`suite synth`: every mutant of a source shares its split key) are not
  independent: resampling tasks overstates certainty. With `clusters` (task id -> cluster, e.g. its
  split key) the interval is a cluster bootstrap: each resample draws clusters with replacement and keeps
  all their tasks (a ratio of sums, so it is the paired bootstrap over per-cluster sums); the
  task-bootstrap interval and McNemar's test on tasks are reported beside it, labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .metrics import LOWER_IS_BETTER, RATIO_METRICS, TaskTotals, pass_at_k

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
ALPHA = 0.05


class IncomparableRuns(ValueError):
    """The two runs did not evaluate the same suite and tasks."""


@dataclass(frozen=True)
class McNemar:
    tasks: int
    baseline_only: int  # tasks the baseline passes and the candidate fails
    candidate_only: int  # tasks the candidate passes and the baseline fails
    p_value: float

    @property
    def discordant(self) -> int:
        return self.baseline_only + self.candidate_only


def mcnemar_exact(baseline: list[bool], candidate: list[bool]) -> McNemar:
    """Two-sided exact McNemar test: p = min(1, 2 * P[X <= min(b, c)]) with X ~ Binomial(b + c, 1/2)."""
    if len(baseline) != len(candidate):
        raise ValueError("paired outcomes must have the same length")
    b = sum(1 for x, y in zip(baseline, candidate) if x and not y)
    c = sum(1 for x, y in zip(baseline, candidate) if y and not x)
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n if n else 1.0
    return McNemar(tasks=len(baseline), baseline_only=b, candidate_only=c, p_value=min(1.0, 2 * tail))


def smallest_possible_p(discordant: int) -> float:
    return min(1.0, 2 * 0.5**discordant) if discordant else 1.0


def majority_pass(totals: TaskTotals) -> bool:
    return totals.passes * 2 > totals.runs


def paired_bootstrap(base_num: Any, base_den: Any, cand_num: Any, cand_den: Any, indices: Any) -> tuple[float | None, float | None]:
    """Percentile interval of ratio(candidate) - ratio(baseline) over task resamples `indices` (B x T)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = cand_num[indices].sum(1) / cand_den[indices].sum(1) - base_num[indices].sum(1) / base_den[indices].sum(1)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def resample_indices(num_tasks: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(0, num_tasks, size=(resamples, num_tasks))


def cluster_sums(num: Any, den: Any, cluster_of_task: list[str]) -> tuple[Any, Any, list[str]]:
    """Per-cluster sums of a metric's numerator and denominator (clusters in sorted order)."""
    import numpy as np

    names = sorted(set(cluster_of_task))
    position = {name: i for i, name in enumerate(names)}
    index = np.array([position[c] for c in cluster_of_task])
    nums, dens = np.zeros(len(names)), np.zeros(len(names))
    np.add.at(nums, index, num)
    np.add.at(dens, index, den)
    return nums, dens, names


def cluster_bootstrap(base_num: Any, base_den: Any, cand_num: Any, cand_den: Any, cluster_of_task: list[str],
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float | None, float | None]:
    """Percentile interval of ratio(candidate) - ratio(baseline), resampling clusters (all tasks of a drawn
    cluster together, the same clusters for both runs)."""
    b_num, b_den, names = cluster_sums(base_num, base_den, cluster_of_task)
    c_num, c_den, _ = cluster_sums(cand_num, cand_den, cluster_of_task)
    return paired_bootstrap(b_num, b_den, c_num, c_den, resample_indices(len(names), resamples, seed))


def _columns(totals: list[TaskTotals], metric: str) -> tuple[Any, Any]:
    import numpy as np

    if metric.startswith("pass@"):
        k = int(metric.split("@")[1])
        return np.array([pass_at_k(t.runs, t.passes, k) for t in totals], dtype=float), np.ones(len(totals))
    num_field, den_field, _ = RATIO_METRICS[metric]
    return (np.array([getattr(t, num_field) for t in totals], dtype=float),
            np.array([getattr(t, den_field) for t in totals], dtype=float))


def _value(num: Any, den: Any) -> float | None:
    total = float(den.sum())
    return float(num.sum()) / total if total else None


def check_comparable(baseline: dict[str, Any], candidate: dict[str, Any]) -> None:
    """`baseline`/`candidate` are run descriptions from report.load_run (suite_id, task_ids, tasks_sha256)."""
    if baseline["suite_id"] != candidate["suite_id"]:
        raise IncomparableRuns(f"different suites: baseline ran {baseline['suite_id']!r}, candidate ran {candidate['suite_id']!r}")
    base_tasks, cand_tasks = set(baseline["task_ids"]), set(candidate["task_ids"])
    if base_tasks != cand_tasks:
        only_b, only_c = sorted(base_tasks - cand_tasks), sorted(cand_tasks - base_tasks)
        raise IncomparableRuns(
            f"different task sets on suite {baseline['suite_id']!r}: only in baseline {only_b[:5]}{'...' if len(only_b) > 5 else ''}, "
            f"only in candidate {only_c[:5]}{'...' if len(only_c) > 5 else ''} (finish both runs, or compare runs of one suite)")
    if baseline.get("tasks_sha256") and candidate.get("tasks_sha256") and baseline["tasks_sha256"] != candidate["tasks_sha256"]:
        raise IncomparableRuns("same task ids but different task records (suite files differ): the runs are not comparable")


def training_overlap(run: dict[str, Any]) -> list[str]:
    trained = set(run.get("trained_task_ids") or [])
    return sorted(trained & set(run["task_ids"]))


def decoding_warnings(baseline: dict[str, Any] | None, candidate: dict[str, Any] | None) -> list[str]:
    """What a difference in decoding (constraint, early stop) does to the comparison, in words."""
    from .report import decoding_text

    if baseline is None or candidate is None or baseline == candidate:
        return []
    said = f"the runs decoded differently (baseline: {decoding_text(baseline)}; candidate: {decoding_text(candidate)})"
    constraints = [{d.get("constrained") for d in run.get("mixed", [run])} for run in (baseline, candidate)]
    if constraints[0] != constraints[1]:
        return [f"{said}: constrained decoding cannot emit most malformed replies, so parse-error rates, pass rates "
                "and everything downstream measure different things; compare constrained runs with constrained runs"]
    return [f"{said}: early stop cuts unparseable replies short, so tokens, wall time and the prompts of later "
            "steps differ by construction (which steps are parse errors does not)"]


def verdict_text(test: McNemar, low: float | None, high: float | None) -> str:
    """A plain-language reading of the pass-rate comparison."""
    if smallest_possible_p(test.tasks) >= ALPHA:
        return (f"The test set is too small to call a difference: with {test.tasks} tasks, even if every task flipped the "
                f"same way the exact test could not reach p < {ALPHA}. Use at least 6 tasks, preferably many more.")
    interval = f"95% CI of the pass-rate difference [{low:+.3f}, {high:+.3f}]" if low is not None else "no interval"
    if test.p_value >= ALPHA:
        extra = ""
        if smallest_possible_p(test.discordant) >= ALPHA:
            extra = (f" Only {test.discordant} task(s) changed outcome; at least 6 flips in one direction are needed "
                     f"for p < {ALPHA}.")
        return (f"No detectable difference in pass rate (McNemar exact p = {test.p_value:.3g}; {interval}).{extra} "
                "This does not show the runs are equal; the test set may be too small to see a real effect.")
    better = "candidate" if test.candidate_only > test.baseline_only else "baseline"
    return (f"The {better} passes more tasks: {test.candidate_only} task(s) only the candidate passes vs "
            f"{test.baseline_only} only the baseline passes (McNemar exact p = {test.p_value:.3g}; {interval}).")


def compare_runs(baseline: dict[str, Any], candidate: dict[str, Any], *, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, allow_trained_tasks: bool = False,
                 clusters: dict[str, str] | None = None) -> dict[str, Any]:
    """`baseline`/`candidate`: run descriptions with "totals" (task_id -> TaskTotals). Raises IncomparableRuns,
    also when a model was trained on evaluated tasks (unless `allow_trained_tasks`). `clusters` (task id ->
    cluster) makes the intervals a cluster bootstrap (see the module docstring)."""
    check_comparable(baseline, candidate)
    if not allow_trained_tasks:
        for role, run in (("baseline", baseline), ("candidate", candidate)):
            overlap = training_overlap(run)
            if overlap:
                raise IncomparableRuns(
                    f"the {role} model was trained on {len(overlap)} evaluated task(s) ({', '.join(overlap[:5])}): its scores "
                    "there measure memory, not skill (--allow-trained-tasks compares anyway, with a warning)")
    task_ids = sorted(baseline["task_ids"])
    missing = [t for t in task_ids if t not in baseline["totals"] or t not in candidate["totals"]]
    if missing:
        raise IncomparableRuns(f"no finished rollout for {len(missing)} task(s), e.g. {missing[:3]}: finish the runs first")
    base = [baseline["totals"][t] for t in task_ids]
    cand = [candidate["totals"][t] for t in task_ids]
    indices = resample_indices(len(task_ids), resamples, seed)
    cluster_of = [clusters.get(t, t) for t in task_ids] if clusters else None
    # one cluster cannot be resampled (every interval would be a point): tasks are resampled, with a warning
    clustered = cluster_of is not None and 2 <= len(set(cluster_of)) < len(task_ids)
    k_max = min(t.runs for t in base + cand)
    metric_names = list(RATIO_METRICS) + [f"pass@{k}" for k in range(2, k_max + 1)]
    metrics: dict[str, Any] = {}
    for name in metric_names:
        base_num, base_den = _columns(base, name)
        cand_num, cand_den = _columns(cand, name)
        b_value, c_value = _value(base_num, base_den), _value(cand_num, cand_den)
        low, high = paired_bootstrap(base_num, base_den, cand_num, cand_den, indices)
        task_interval = {}
        if clustered:
            task_interval = {"task_ci_low": low, "task_ci_high": high}
            low, high = cluster_bootstrap(base_num, base_den, cand_num, cand_den, cluster_of, resamples, seed)
        metrics[name] = {
            "baseline": b_value, "candidate": c_value,
            "difference": None if b_value is None or c_value is None else c_value - b_value,
            "ci_low": low, "ci_high": high,
            "ci_excludes_zero": low is not None and (low > 0 or high < 0),
            "lower_is_better": name in LOWER_IS_BETTER,
            **task_interval,
        }
    test = mcnemar_exact([majority_pass(t) for t in base], [majority_pass(t) for t in cand])
    pass_ci = metrics["pass_rate"]
    warnings = []
    if cluster_of is not None and len(set(cluster_of)) == 1 and len(task_ids) > 1:
        warnings.append(f"all {len(task_ids)} tasks come from one program ({cluster_of[0]}): the intervals resample tasks "
                        "and overstate certainty; compare on tasks from several programs")
    for role, run in (("candidate", candidate), ("baseline", baseline)):
        overlap = training_overlap(run)
        if overlap:
            warnings.append(f"the {role} model was trained on {len(overlap)} of the {len(task_ids)} evaluated tasks "
                            f"({', '.join(overlap[:5])}{'...' if len(overlap) > 5 else ''}): its scores on them are not a test result")
    for role, run in (("baseline", baseline), ("candidate", candidate)):
        if run.get("reference_ceiling"):
            warnings.append(f"the {role} is the oracle, which knows the reference fixes: a reference ceiling, not a model")
    warnings += decoding_warnings(baseline.get("decoding"), candidate.get("decoding"))
    if baseline.get("toolset", "files") != candidate.get("toolset", "files"):
        warnings.append(f"the runs used different tool sets (baseline: {baseline.get('toolset', 'files')}, candidate: "
                        f"{candidate.get('toolset', 'files')}): the difference is the scaffold's as much as the model's")
    return {
        "suite_id": baseline["suite_id"],
        "tasks": len(task_ids),
        "baseline": {k: baseline.get(k) for k in ("path", "label", "decoding", "toolset")},
        "candidate": {k: candidate.get(k) for k in ("path", "label", "decoding", "toolset")},
        "method": {
            "interval": (f"cluster bootstrap over {len(set(cluster_of))} clusters (tasks made from one program resampled "
                         f"together), percentile {CONFIDENCE:.0%} interval; task-bootstrap interval beside it"
                         if clustered else f"paired bootstrap over tasks, percentile {CONFIDENCE:.0%} interval"),
            "clusters": len(set(cluster_of)) if clustered else None,
            "resamples": resamples, "seed": seed,
            "pass_test": "McNemar exact binomial test on discordant tasks (two-sided); "
                         "task outcome = strict majority of its rollouts",
        },
        "metrics": metrics,
        "mcnemar": {"baseline_only": test.baseline_only, "candidate_only": test.candidate_only,
                    "discordant": test.discordant, "p_value": test.p_value,
                    "smallest_possible_p": smallest_possible_p(test.tasks)},
        "verdict": verdict_text(test, pass_ci["ci_low"], pass_ci["ci_high"]),
        "warnings": warnings,
        "per_task": [
            {"task_id": t, "baseline_pass_rate": b.passes / b.runs, "candidate_pass_rate": c.passes / c.runs,
             "baseline_runs": b.runs, "candidate_runs": c.runs,
             "baseline_majority": majority_pass(b), "candidate_majority": majority_pass(c)}
            for t, b, c in zip(task_ids, base, cand)
        ],
    }

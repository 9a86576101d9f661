"""PNG plots of a comparison (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_differences(comparison: dict[str, Any], path: Path) -> Path:
    """One panel per metric: baseline and candidate bars; the whisker on the candidate bar spans
    baseline + the 95% bootstrap interval of the difference (where the candidate plausibly lies)."""
    plt = _pyplot()
    metrics = {k: v for k, v in comparison["metrics"].items() if v["baseline"] is not None and v["candidate"] is not None}
    cols = 4
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, v) in zip(axes.flat, metrics.items()):
        ax.bar([0, 1], [v["baseline"], v["candidate"]], color=["#8c8c8c", "#3b75af"], width=0.6)
        if v["ci_low"] is not None:
            low, high = v["baseline"] + v["ci_low"], v["baseline"] + v["ci_high"]
            ax.errorbar([1], [v["candidate"]], yerr=[[max(0.0, v["candidate"] - low)], [max(0.0, high - v["candidate"])]],
                        fmt="none", ecolor="black", capsize=5)
            subtitle = f"Δ {v['difference']:+.3g} [{v['ci_low']:+.3g}, {v['ci_high']:+.3g}]"
        else:
            subtitle = f"Δ {v['difference']:+.3g}"
        ax.set_xticks([0, 1], ["baseline", "candidate"])
        ax.set_title(f"{name}\n{subtitle}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{comparison['candidate']['label']} vs {comparison['baseline']['label']} "
                 f"({comparison['tasks']} tasks, 95% paired bootstrap)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_outcome_grid(comparison: dict[str, Any], path: Path) -> Path:
    """Tasks x {baseline, candidate}, coloured by the task's pass rate, annotated with it."""
    plt = _pyplot()
    tasks = comparison["per_task"]
    grid = [[t["baseline_pass_rate"], t["candidate_pass_rate"]] for t in tasks]
    fig, ax = plt.subplots(figsize=(4.5, 0.8 + 0.32 * max(1, len(tasks))))
    image = ax.imshow(grid or [[0, 0]], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for row, values in enumerate(grid):
        for col, value in enumerate(values):
            ax.text(col, row, f"{value:.2g}", ha="center", va="center", fontsize=8)
    ax.set_xticks([0, 1], ["baseline", "candidate"])
    ax.set_yticks(range(len(tasks)), [t["task_id"] for t in tasks], fontsize=8)
    fig.colorbar(image, ax=ax, label="pass rate")
    ax.set_title("Per-task outcomes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

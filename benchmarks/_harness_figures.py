"""Figures of benchmarks/harness_overhead.py: per-step overhead from the stamps the drivers report.

The same code for every side. A step is the span from the end of one model call to the start of the next
(or to the end of the episode); its overhead is that span minus test runs and workspace copies, and,
in the second figure, minus tool/command execution too.
"""

from __future__ import annotations

import statistics

MINI = "mini-swe-agent"
COMMON_STEPS = ("list", "read", "grep", "write", "final")  # steps every side takes; mini adds "test"
GOAL_RATIO = 0.5  # issue 7: repo-agent at most half of mini-swe-agent's per-step overhead
# issue 27: files stays at most a quarter, bash at most 0.8x (the other sides keep issue 7's goal)
SIDE_GOALS = {"repo-agent files": 0.25, "repo-agent bash": 0.8}


def episode_figures(episode: dict, kinds: list[str]) -> dict:
    """Per-step overhead (ms) by kind, with and without tool execution, plus totals. Same code for every side."""
    events = episode["events"]
    models = sorted((e for e in events if e["kind"] == "model"), key=lambda e: e["start"])
    # Trace writes: mini stamps its saves in place; repo-agent's driver reports, per write, its file I/O
    # in place and its encoding from a replay (benchmarks/_repo_agent_driver.py says why).
    replayed = episode.get("trace_writes")
    if replayed is None:
        writes = [{"in_place_s": e["end"] - e["start"]} for e in events if e["kind"] == "trace"]
    else:
        writes = [dict(w, in_place_s=w["io_in_place_s"] + w["encode_replayed_s"]) for w in replayed]
    seen = {e["kind"] for e in events} | ({"trace"} if writes else set())
    if not {"model", "tool", "test", "trace", "workspace"} <= seen:
        # A renamed or moved method would otherwise silently drop out of the figures.
        raise SystemExit(f"{episode['task_id']}: instrumentation lost, only saw {sorted(seen)}; "
                         "update the drivers in benchmarks/")

    def inside(kind, lo, hi):
        return sum(max(0.0, min(e["end"], hi) - max(e["start"], lo)) for e in events if e["kind"] == kind)

    def excluded(lo, hi):
        return inside("test", lo, hi) + inside("workspace", lo, hi)

    ms = 1000.0
    first = models[0]["start"]
    steps, bare, tools = {}, {}, {}
    for index, model in enumerate(models):
        lo = model["end"]
        hi = models[index + 1]["start"] if index + 1 < len(models) else episode["loop_end"]
        kind = kinds[index] if index < len(kinds) else f"extra{index}"
        steps[kind] = (hi - lo - excluded(lo, hi)) * ms
        tools[kind] = inside("tool", lo, hi) * ms
        bare[kind] = steps[kind] - tools[kind]
    setup = (first - episode["loop_start"] - excluded(episode["loop_start"], first)) * ms
    lo, hi = episode["start"], episode["end"]
    common = [k for k in COMMON_STEPS if k in steps]
    return {
        "step_ms": steps,
        "step_excl_tool_ms": bare,
        "per_step_ms": sum(steps[k] for k in common) / len(common),
        "per_step_excl_tool_ms": sum(bare[k] for k in common) / len(common),
        "tool_exec_ms_per_step": sum(tools[k] for k in common) / len(common),
        "trace_write_ms_per_step": sum(w["in_place_s"] for w in writes) * ms / len(models),
        **({"trace_io_ms_per_step": sum(w["io_in_place_s"] for w in replayed) * ms / len(models),
            "trace_replay_ms_per_step": sum(w["replay_s"] for w in replayed) * ms / len(models)} if replayed else {}),
        "episode_overhead_ms": setup + sum(steps.values()),
        "setup_ms": setup,
        **({"final_diff_ms": inside("diff", lo, hi) * ms} if "diff" in seen else {}),
        "test_ms": inside("test", lo, hi) * ms,
        "workspace_ms": inside("workspace", lo, hi) * ms,
        "model_ms": inside("model", lo, hi) * ms,
        "steps": len(models),
        "trace_bytes": episode["trace_bytes"],
    }


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


RATIO_FIGURES = {"per_step": "per_step_ms", "per_step_excl_tool": "per_step_excl_tool_ms",
                 "tool_exec": "tool_exec_ms_per_step", "trace_write": "trace_write_ms_per_step",
                 "episode_overhead": "episode_overhead_ms", "test_run": "test_ms", "startup": "startup_ms"}


def summarize(runs: dict[str, list[dict]], kinds: dict[str, list[str]]) -> dict:
    """runs[side] = one record per process (repetition). Figures pool the measured episodes."""
    sides: dict[str, dict] = {}
    for side, records in runs.items():
        figures = [[episode_figures(e, kinds[side]) for e in r["episodes"] if not e["warmup"]] for r in records]
        pooled = [f for rep in figures for f in rep]
        warm = [episode_figures(e, kinds[side]) for r in records for e in r["episodes"] if e["warmup"]]
        summary = {k: spread([f[k] for f in pooled]) for k, v in pooled[0].items() if isinstance(v, (int, float))}
        for table in ("step_ms", "step_excl_tool_ms"):
            summary[table] = {k: spread([f[table][k] for f in pooled]) for k in pooled[0][table]}
        summary["warmup_episode_overhead_ms"] = spread([f["episode_overhead_ms"] for f in warm])
        summary["startup_ms"] = spread([r["startup_s"] * 1000 for r in records])
        summary["import_ms"] = spread([r["import_s"] * 1000 for r in records])
        episodes = [e for r in records for e in r["episodes"]]
        summary["passed"] = f"{sum(e['passed'] for e in episodes)}/{len(episodes)}"
        summary["per_rep_median"] = {key: [statistics.median(f[key] for f in rep) for rep in figures]
                                     for key in ("per_step_ms", "per_step_excl_tool_ms")}
        sandboxes = {e.get("sandbox") for e in episodes if e.get("sandbox")}
        if sandboxes:
            summary["test_sandbox"] = sorted(sandboxes)
        sides[side] = summary
    result: dict = {"sides": sides}
    if MINI in sides:
        mini = sides[MINI]
        result["ratios_vs_mini"], result["goal"] = {}, {"per_step_ratio_at_most": {side: SIDE_GOALS.get(side, GOAL_RATIO)
                                                                                   for side in sides if side != MINI}}
        for side, s in sides.items():
            if side == MINI:
                continue
            ratios = {name: s[key]["median"] / mini[key]["median"] for name, key in RATIO_FIGURES.items()
                      if mini[key]["median"] > 0}
            for key, name in (("per_step_ms", "per_step_per_rep"), ("per_step_excl_tool_ms", "per_step_excl_tool_per_rep")):
                ratios[name] = spread([a / b for a, b in zip(s["per_rep_median"][key], mini["per_rep_median"][key])])
            result["ratios_vs_mini"][side] = ratios
            goal = SIDE_GOALS.get(side, GOAL_RATIO)
            result["goal"][side] = {"per_step_ratio": ratios["per_step"], "at_most": goal, "met": ratios["per_step"] <= goal,
                                    "excl_tool_ratio": ratios["per_step_excl_tool"],
                                    "excl_tool_met": ratios["per_step_excl_tool"] <= goal}
    return result

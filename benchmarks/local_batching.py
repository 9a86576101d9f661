"""Dynamic batching of the `local` provider (issue 7 item 5): N concurrent rollouts vs N sequential ones.

    .venv/bin/python benchmarks/local_batching.py [--model smollm2] [--rollouts 8] [--max-tokens 64] [--reps 2]

Each "rollout" is the first model call of a real episode: the json-protocol system prompt plus the
goal of one bundled task (8 different tasks), greedy. Both modes go through the same shared engine
(LocalModel.complete): `sequential` calls it N times from one thread; `concurrent` calls it from N
threads at once, so the engine's worker batches them. The untrained SmolLM2 writes prose, so every
reply runs to --max-tokens and both modes generate the same number of tokens; the script checks that
both modes return identical texts (batching must not change greedy answers).
Both modes run twice: with the engine's prefix KV cache (the shared system prompt is prefilled once
and reused, the default) and without it (every prompt fully prefilled), to separate what batching
buys from what prefix reuse buys. Modes are interleaved, their order rotating per repetition, so
machine noise hits all of them.
Figures: wall time and generated tokens/s per mode (median, min-max), and the speed-up
(sequential time / concurrent time, same cache setting; goal >= 2x). Writes
benchmarks/results/local_batching.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from repo_agent.models.base import ProviderConfig, Sampling  # noqa: E402
from repo_agent.prompts import goal_message, system_prompt  # noqa: E402
from repo_agent.suites.task import load_suite  # noqa: E402


def prompts(count: int) -> list[list[dict]]:
    suite = load_suite(REPO / "eval" / "suites" / "bundled_suite.json")
    tasks = list(suite.tasks)[:count]
    return [[{"role": "system", "content": system_prompt("json")}, {"role": "user", "content": goal_message(t.goal)}] for t in tasks]


def make_models(model: str, count: int, max_tokens: int):
    from repo_agent.models.local_hf import LocalModel

    config = ProviderConfig(provider="local", model=model, sampling=Sampling(temperature=0.0, max_tokens=max_tokens))
    return [LocalModel(config, seed=i) for i in range(count)]


def run_sequential(models, chats):
    started = time.perf_counter()
    replies = [m.complete(c) for m, c in zip(models, chats)]
    return time.perf_counter() - started, replies


def run_concurrent(models, chats):
    replies = [None] * len(chats)
    barrier = threading.Barrier(len(chats) + 1)

    def worker(i):
        barrier.wait()
        replies[i] = models[i].complete(chats[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(chats))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, replies


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "local_batching.json"))
    args = parser.parse_args()

    import torch

    from repo_agent.models.local_hf import BatchingEngine

    chats = prompts(args.rollouts)
    cached_models = make_models(args.model, args.rollouts, args.max_tokens)
    shared = cached_models[0].engine
    uncached_engine = BatchingEngine(shared.model, shared.tokenizer, prefix_cache=False)
    uncached_models = make_models(args.model, args.rollouts, args.max_tokens)
    for model in uncached_models:
        model.engine = uncached_engine  # same weights, only the cache policy differs
    cached_models[0].complete(chats[0])  # warm-up: first-call allocations are not what we measure
    modes = ["sequential", "concurrent", "sequential-nocache", "concurrent-nocache"]
    times = {m: [] for m in modes}
    tokens = {m: [] for m in modes}
    texts, batch_sizes = {}, []
    for rep in range(args.reps):
        order = modes[rep % len(modes):] + modes[: rep % len(modes)]
        for mode in order:
            models = uncached_models if mode.endswith("nocache") else cached_models
            engine = models[0].engine
            before = len(engine.batch_sizes)
            runner = run_sequential if mode.startswith("sequential") else run_concurrent
            seconds, replies = runner(models, chats)
            assert all(r.error is None for r in replies), [r.error for r in replies]
            times[mode].append(seconds)
            tokens[mode].append(sum(r.completion_tokens for r in replies))
            texts.setdefault(mode, [r.content for r in replies])
            if mode == "concurrent":
                batch_sizes.extend(engine.batch_sizes[before:])
            print(f"rep {rep + 1} {mode:>18}: {seconds:7.2f} s, {tokens[mode][-1]} tokens", flush=True)
    rate = {m: [n / s for n, s in zip(tokens[m], times[m])] for m in times}
    speedups = [s / c for s, c in zip(times["sequential"], times["concurrent"])]
    speedups_nocache = [s / c for s, c in zip(times["sequential-nocache"], times["concurrent-nocache"])]
    cache_gain = [n / c for n, c in zip(times["sequential-nocache"], times["sequential"])]
    result = {
        "benchmark": "local_batching",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg(), "note": "2 CPU cores shared with other jobs: absolute numbers are noisy"},
        "settings": {"model": args.model, "rollouts": args.rollouts, "max_tokens": args.max_tokens, "reps": args.reps,
                                  "prompt_tokens": [len(shared.tokenizer.apply_chat_template(c, add_generation_prompt=True, return_dict=True)
                                           ["input_ids"]) for c in chats],
                     "batch_window_s": shared.window_s},
        "seconds": {m: summary(v) for m, v in times.items()},
        "generated_tokens_per_s": {m: summary(v) for m, v in rate.items()},
        "speedup_concurrent_vs_sequential": summary(speedups),
        "speedup_concurrent_vs_sequential_nocache": summary(speedups_nocache),
        "prefix_cache_gain_sequential": summary(cache_gain),
        "concurrent_batch_sizes": batch_sizes,
        "identical_replies": all(texts[m] == texts["sequential"] for m in modes),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'mode':>18} | {'seconds median (min-max)':>26} | {'gen tokens/s median (min-max)':>30}")
    for mode in modes:
        t, r = result["seconds"][mode], result["generated_tokens_per_s"][mode]
        print(f"{mode:>18} | {t['median']:8.2f} ({t['min']:.2f}-{t['max']:.2f}) | {r['median']:12.2f} ({r['min']:.2f}-{r['max']:.2f})")
    s = result["speedup_concurrent_vs_sequential"]
    print(f"speed-up concurrent vs sequential: {s['median']:.2f}x (min {s['min']:.2f}, max {s['max']:.2f}); goal >= 2x")
    s = result["speedup_concurrent_vs_sequential_nocache"]
    print(f"same without prefix cache:         {s['median']:.2f}x (min {s['min']:.2f}, max {s['max']:.2f})")
    s = result["prefix_cache_gain_sequential"]
    print(f"prefix cache gain (sequential):    {s['median']:.2f}x (min {s['min']:.2f}, max {s['max']:.2f})")
    print(f"batch sizes seen: {batch_sizes}; identical replies: {result['identical_replies']}")
    print(f"machine: {result['machine']}\nwritten: {args.out}")


if __name__ == "__main__":
    main()

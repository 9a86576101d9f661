"""TRL's `rollout_func` for repo-agent episodes: every prompt of the batch is played as a whole episode
of the JSON protocol through the ordinary agent loop (same tools, loop detection, sealed verdict,
traces), with the policy being trained as the model (episode_tokens.PolicyModel).

TRL passes `prompts` already repeated num_generations times (one rollout per entry). The function
returns the ids of each episode with `env_mask` 0 on every token the model did not generate, and per
episode the extras the rewards read as keywords: `trace`, `reference_diff`, `buggy_passing`,
`trace_path`, `task_id`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..agent import AgentConfig, run_episode
from ..models.base import Sampling
from ..prompts import goal_message
from ..rewards.references import task_references
from ..suites.task import Suite, TaskSpec
from ..toolsets import toolset_named
from .episode_tokens import EpisodeTokens, PolicyModel, conversation_of

ROLLOUTS_DIR = "rollouts"
TASK_KEY = "task_id"  # on a row's user message: which task the prompt belongs to


def episode_prompt(task: TaskSpec, agent: AgentConfig) -> list[dict[str, str]]:
    """What run_episode sends first: the tool set's system prompt and the task's goal."""
    return [{"role": "system", "content": toolset_named(agent.toolset).system_prompt(agent.tool_protocol)},
            {"role": "user", "content": goal_message(task.goal)}]


def task_rows(suite: Suite, agent: AgentConfig) -> list[dict[str, Any]]:
    """One dataset row per task: the episode's prompt (TRL hands it back to rollout_func) and task_id.

    TRL hands rollout_func the prompts alone, and tasks synthesized from one program share their goal text,
    so the user message carries the task's id under a key no chat template renders (the episode itself
    builds its messages from the task, not from this row)."""
    rows = []
    for task in suite.tasks:
        prompt = episode_prompt(task, agent)
        prompt[-1][TASK_KEY] = task.task_id
        rows.append({"prompt": prompt, "task_id": task.task_id})
    return rows


@dataclass
class Rollout:
    trace: dict[str, Any]
    tokens: EpisodeTokens
    trace_path: Path


class EpisodeRollouts:
    """Callable as TRL's rollout_func(prompts, trainer). `generate_for(trainer)` gives a context manager
    yielding generate(prompt_ids, max_new, seed) -> (ids, text, finish_reason) on the current weights."""

    def __init__(self, suite: Suite, agent: AgentConfig, sampling: Sampling, token_budget: int, output: Path,
                 generation: Callable[[Any], Any], tokenizer: Any, eos_ids: list[int], seed: int = 0,
                 on_batch: Callable[[list[Rollout]], None] | None = None, workers: int | None = None,
                 lock: Any = None):
        self.suite, self.agent, self.sampling = suite, agent, sampling
        self.token_budget, self.output, self.seed = token_budget, Path(output), seed
        self.generation, self.tokenizer, self.eos_ids = generation, tokenizer, eos_ids
        self.on_batch, self.workers, self.lock = on_batch, workers, lock
        self.by_goal: dict[str, list[TaskSpec]] = {}
        for task in suite.tasks:
            self.by_goal.setdefault(goal_message(task.goal), []).append(task)
        self.calls = 0

    def task_of(self, prompt: list[dict[str, Any]]) -> TaskSpec:
        """The task a prompt belongs to: the id task_rows put on its user message, else its goal text when
        exactly one task of the suite has it."""
        user = next((m for m in reversed(prompt) if m.get("role") == "user"), {})
        if user.get(TASK_KEY):
            try:
                return self.suite.task(user[TASK_KEY])
            except KeyError:
                raise ValueError(f"a prompt of the batch names task {user[TASK_KEY]!r}, which is not in the suite") from None
        tasks = self.by_goal.get(user.get("content"), [])
        if len(tasks) != 1:
            raise ValueError("a prompt of the batch is not the goal of any task of the suite" if not tasks else
                             f"a prompt of the batch is the goal of {len(tasks)} tasks ({tasks[0].task_id}, "
                             f"{tasks[1].task_id}, ...) and names none of them")
        return tasks[0]

    def play(self, prompts: list[list[dict[str, Any]]], step: int, generate: Any) -> list[Rollout]:
        tasks = [self.task_of(p) for p in prompts]
        folder = self.output / ROLLOUTS_DIR / f"step-{step:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for task in {t.task_id: t for t in tasks}.values():  # the baselines before the episodes compete for cores
            task_references(self.suite, task, self.agent.sandbox)

        def one(index: int) -> Rollout:
            task = tasks[index]
            seed = (self.seed * 1_000_003 + step * 10_007 + index) % (2**31)
            policy = PolicyModel(self.tokenizer, generate, self.sampling, self.token_budget, seed, lock=self.lock)
            path = folder / f"{task.task_id.replace('/', '__')}__g{index}.json"
            trace = run_episode(self.suite, task, policy, self.agent, path, provider="grpo-policy", model="policy",
                                grpo={"step": step, "index": index, "seed": seed, "token_budget": self.token_budget},
                                sampling={"temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                                          "max_tokens": self.sampling.max_tokens})
            tokens = policy.finish(conversation_of(trace), self.eos_ids)
            if not tokens.completion_ids:  # the episode ended before the first reply (e.g. a harness error)
                tokens.add([self.eos_ids[0]], trained=False)
            return Rollout(trace, tokens, path)

        with ThreadPoolExecutor(max_workers=self.workers or len(prompts)) as pool:
            return list(pool.map(one, range(len(prompts))))

    def __call__(self, prompts: list[list[dict[str, Any]]], trainer: Any) -> dict[str, Any]:
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0) or 0)
        with self.generation(trainer) as generate:
            rollouts = self.play(prompts, step, generate)
        self.calls += 1
        if self.on_batch is not None:
            self.on_batch(rollouts)
        refs = [task_references(self.suite, self.suite.task(r.trace["task_id"]), self.agent.sandbox) for r in rollouts]
        return {
            "prompt_ids": [r.tokens.prompt_ids for r in rollouts],
            "completion_ids": [r.tokens.completion_ids for r in rollouts],
            "logprobs": None,
            "env_mask": [r.tokens.mask for r in rollouts],
            "trace": [r.trace for r in rollouts],
            "trace_path": [str(r.trace_path) for r in rollouts],
            "reference_diff": [ref["reference_diff"] for ref in refs],
            "buggy_passing": [ref["buggy_passing"] for ref in refs],
        }


def with_full_verdict(agent: AgentConfig, full: bool) -> AgentConfig:
    return replace(agent, verdict_fail_fast=False) if full else agent

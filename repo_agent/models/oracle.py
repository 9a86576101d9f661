"""The oracle teacher as a model: it reads the conversation it is sent, asks its policy
(teacher/policy.py) what to do next and answers with that action in the JSON tool protocol (or as a
native function call). It knows the task's proven minimal fix, so it produces valid teacher traces
with no LLM at all; its seed varies how it explores, and with a mistake rate it sometimes writes a
proven-wrong fix first and recovers after the tests fail. The reply of a deliberate mistake is marked
(`ModelReply.mistake`), so the trace marks that step and training never takes it as a target.

How it speaks each tool set (files, edit, bash) is teacher/speech.py: the policy is the same for all.
"""

from __future__ import annotations

import json
import random
from typing import Any

from ..protocol import Final, render_action
from ..suites.task import Suite, TaskSpec
from ..teacher.knowledge import TaskKnowledge
from ..teacher.mutations import KINDS, MistakeProver, WrongFix, candidates, disabled_asserts
from ..teacher.policy import TeacherPolicy, Write, draw_plan
from ..teacher.speech import speech_for
from .base import ModelReply

MAX_PROOF_RUNS = 4  # wrong fixes tried (one sealed test run each) before giving up on a mistake
_KIND_WEIGHTS = {"operator_swap": 3, "off_by_one": 2, "wrong_variable": 3, "partial_fix": 2, "unchanged": 1,
                 "protected_write": 1}


class OracleModel:
    def __init__(self, suite: Suite, task: TaskSpec, seed: int, mistake_rate: float = 0.0,
                 fork_of: int | None = None, sandbox: str = "auto", toolset: str = "files"):
        self.suite, self.seed = suite, seed
        self.knowledge = TaskKnowledge.of(suite, task)
        self.plan = draw_plan(self.knowledge, seed, mistake_rate, fork_of)
        self.prover = MistakeProver(suite, sandbox)
        self._wrong: tuple[WrongFix | None] | None = None
        self.speech = speech_for(toolset)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ModelReply:
        goal = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        policy = TeacherPolicy(self.knowledge, self.plan, self.wrong_fix, goal)
        intent = policy.decide(self.speech.turns_of(messages))
        action = self.speech.render(intent)
        mistake = isinstance(intent, Write) and intent.mistake is not None
        if tools:  # native protocol: answer with a function call
            step = sum(1 for m in messages if m.get("role") == "assistant")
            name, args = ("final", {"summary": action.summary}) if isinstance(action, Final) else (action.name, action.args)
            call = {"id": f"call_{step}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            return ModelReply(content="", tool_calls=[call], mistake=mistake)
        return ModelReply(content=render_action(action), mistake=mistake)

    def wrong_fix(self) -> WrongFix | None:
        """The wrong fix this rollout writes first: drawn by the plan's seed, proven wrong by a test run."""
        if self._wrong is None:
            self._wrong = (self._pick_wrong_fix(),)
        return self._wrong[0]

    def _pick_wrong_fix(self) -> WrongFix | None:
        k = self.knowledge
        pool = [c for path in k.targets for c in candidates(path, k.buggy.get(path, ""), k.fixes[path])]
        if k.test_file and k.test_text is not None and k.task.rules.refusal(k.test_file, True):
            pool.append(WrongFix("protected_write", k.test_file, disabled_asserts(k.test_text),
                                 "rewrote the test file with its asserts disabled"))
        rng = random.Random(self.plan.mistake_seed)
        rng.shuffle(pool)
        kinds = [kind for kind in KINDS if any(c.kind == kind for c in pool)]
        if not kinds:
            return None
        first = rng.choices(kinds, weights=[_KIND_WEIGHTS[kind] for kind in kinds])[0]
        pool.sort(key=lambda c: c.kind != first)  # stable: the drawn kind first, the rest in shuffled order
        for fix in pool[:MAX_PROOF_RUNS]:
            if self.prover.fails(k, fix):
                return fix
        return None

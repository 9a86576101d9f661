"""The oracle's policy: a pure function of its plan (drawn from its seed) and what it has seen so far.

It never follows a fixed list. Each step it looks at the conversation (what it did and what came back)
and decides: explore until it has seen where the target file is (a tool error or an empty search makes
it try another way), read every file it is about to rewrite in full (`max_chars` at least its size;
again after it changed it), read the test file when its plan says so or when a fix failed, optionally
write a proven-wrong fix first (a "mistake": the tests then fail and it recovers), write the right fix
(the proven minimal fix; after an unexpected failure the full reference), and finish once the files
hold the right content and no test said otherwise.

Intents do not depend on a tool set: `models/oracle.py` renders them as JSON tool calls; an edit or
bash tool set renders a `Write` from its `before` text and content.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Union

from .knowledge import TaskKnowledge
from .mutations import WrongFix

READ_SIZES = (2000, 4000, 8000, 16000, 32000, 64000, 128000, 200000)  # 200000: the schema's max_chars
MAX_TURNS = 24  # a runaway guard: a plan never needs more than about 10


# --------------------------------------------------------------------------------------------- intents


@dataclass(frozen=True)
class ListFiles:
    rel_dir: str = "."
    max_files: int = 200


@dataclass(frozen=True)
class Search:
    pattern: str
    rel_dir: str = "."
    max_matches: int = 50


@dataclass(frozen=True)
class Read:
    path: str
    max_chars: int = 4000


@dataclass(frozen=True)
class Write:
    path: str
    content: str
    before: str | None = None  # what the teacher last read of `path` (for tool sets that send edits)
    mistake: WrongFix | None = None  # set on a deliberate wrong fix


@dataclass(frozen=True)
class Finish:
    summary: str


Intent = Union[ListFiles, Search, Read, Write, Finish]


@dataclass(frozen=True)
class Turn:
    """One earlier step as the teacher sees it: what it did (None if unreadable) and the result text."""

    intent: Intent | None
    result: str

    @property
    def ok(self) -> bool:
        return not self.result.startswith("ERROR")

    @property
    def tests(self) -> str | None:
        """pass / fail from the driver's [TESTS PASS] / [TESTS FAIL] line, None when no tests ran. Only a
        write or a final gets one: a file that was read may hold such a line, and is not a test result."""
        if not isinstance(self.intent, (Write, Finish)):
            return None
        verdict = None
        for line in self.result.splitlines():
            if line.startswith("[TESTS PASS]"):
                verdict = "pass"
            elif line.startswith("[TESTS FAIL]"):
                verdict = "fail"
        return verdict

    @property
    def truncated(self) -> bool:
        return "... [truncated: showing" in self.result


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Plan:
    """The rollout's preferences. Everything before the first write comes from `pre` draws, the rest
    from `post` draws, so that two branches sharing their `pre` seed reach their first write in the
    same conversation state."""

    explore: tuple[Intent, ...]
    bigger_reads: bool  # read with the second-smallest max_chars that holds the file
    read_tests_first: bool
    mistake: bool  # write a proven-wrong fix first
    read_tests_after_failure: bool
    mistake_seed: int  # orders the wrong fixes to try


def draw_plan(knowledge: TaskKnowledge, seed: int, mistake_rate: float, fork_of: int | None = None) -> Plan:
    """The plan of a rollout. With `fork_of` (the seed of the rollout it branches from) everything up to
    the first write is that rollout's, and the first write is the opposite: a mistake where it wrote the
    fix, the fix where it wrote a mistake."""
    pre = random.Random(f"oracle-pre:{seed if fork_of is None else fork_of}")
    post = random.Random(f"oracle-post:{seed}")
    explore = _draw_exploration(knowledge, pre)
    bigger_reads = pre.random() < 0.4
    read_tests_first = knowledge.test_file is not None and pre.random() < 0.35
    leader_mistake = pre.random() < mistake_rate
    mistake = (not leader_mistake) if fork_of is not None else leader_mistake
    return Plan(explore, bigger_reads, read_tests_first, mistake,
                read_tests_after_failure=knowledge.test_file is not None and post.random() < 0.6,
                mistake_seed=post.randrange(2**31))


def _draw_exploration(knowledge: TaskKnowledge, rng: random.Random) -> tuple[Intent, ...]:
    patterns = knowledge.search_patterns()
    pattern = patterns[min(len(patterns) - 1, rng.choice((0, 0, 1, 3)))] if patterns else None
    folder = str(PurePosixPath(knowledge.targets[0]).parent) if knowledge.targets else "."
    listing = ListFiles(".", rng.choice((100, 200)))
    search = Search(pattern) if pattern else listing
    choice = rng.choices(["direct", "list", "search", "list+search", "search+folder"], weights=(15, 25, 25, 20, 15))[0]
    return {
        "direct": (),
        "list": (listing,),
        "search": (search,),
        "list+search": (listing, search),
        "search+folder": (search, ListFiles(folder, 200)),
    }[choice]


# ---------------------------------------------------------------------------------------------- policy


class TeacherPolicy:
    def __init__(self, knowledge: TaskKnowledge, plan: Plan, wrong_fix: Callable[[], WrongFix | None], goal: str = ""):
        self.k, self.plan, self.goal = knowledge, plan, goal
        self._wrong_fix = wrong_fix  # resolved lazily: proving a wrong fix costs a test run

    def decide(self, turns: list[Turn]) -> Intent:
        if len(turns) >= MAX_TURNS:
            return Finish(f"Stopped after {len(turns)} steps without a verified fix.")
        state = _State.replay(self.k, turns)
        step = (self._explore(turns, state) or self._read_targets(turns, state) or self._read_tests(turns, state)
                or self._write(turns, state))
        return step if step is not None else self._finish(turns, state)

    # -- exploring: the planned steps, then other ways while the target has not shown up anywhere
    def _explore(self, turns: list[Turn], state: "_State") -> Intent | None:
        if state.writes_tried:
            return None
        done = [t.intent for t in turns]
        for intent in self.plan.explore:
            if intent not in done:
                return intent
        if self._located(turns):
            return None
        folder = str(PurePosixPath(self.k.targets[0]).parent)
        fallbacks: list[Intent] = [Search(p) for p in self.k.search_patterns()[:2]] + [ListFiles(folder), ListFiles(".")]
        tried = sum(1 for intent in fallbacks if intent in done)
        for intent in fallbacks:
            if intent not in done and tried < 3:
                return intent
        return None

    def _located(self, turns: list[Turn]) -> bool:
        seen = [self.goal] + [t.result for t in turns if t.ok and not isinstance(t.intent, Write)]
        return all(any(path in text for text in seen) for path in self.k.targets)

    # -- reading what it will rewrite, in full, since it last changed it
    def _read_targets(self, turns: list[Turn], state: "_State") -> Intent | None:
        for path in self.k.targets:
            if path not in state.intended or state.content[path] == state.intended[path]:
                continue
            if state.last_read(turns, path) == state.content[path]:
                continue  # it has seen the file as it is now (reading it again would be a loop)
            reads = [t for t in turns[state.last_write.get(path, -1) + 1:]
                     if isinstance(t.intent, Read) and t.intent.path == path]
            if any(t.ok and not t.truncated for t in reads):
                continue
            size = len(state.content[path])
            if not reads:
                return Read(path, self._read_size(size))
            last = reads[-1]
            if last.ok and last.truncated and last.intent.max_chars < READ_SIZES[-1]:  # type: ignore[union-attr]
                return Read(path, min(READ_SIZES[-1], max(2 * last.intent.max_chars, size + 1000)))  # type: ignore[union-attr]
            folder = ListFiles(str(PurePosixPath(path).parent))
            if not last.ok and folder not in [t.intent for t in turns]:
                return folder  # the read failed: look at what is there before writing anyway
        return None

    def _read_size(self, size: int) -> int:
        fitting = [n for n in READ_SIZES if n >= size] or [READ_SIZES[-1]]
        return fitting[min(len(fitting) - 1, 1 if self.plan.bigger_reads else 0)]

    # -- the test file: first when planned, and after a failure (never twice: that would be a loop)
    def _read_tests(self, turns: list[Turn], state: "_State") -> Intent | None:
        path = self.k.test_file
        if path is None or any(isinstance(t.intent, Read) and t.intent.path == path for t in turns):
            return None
        wanted = (self.plan.read_tests_first and not state.writes_tried) or (
            self.plan.read_tests_after_failure and state.failures and not state.done)
        return Read(path, self._read_size(len(self.k.test_text or ""))) if wanted else None

    # -- writing: a proven-wrong fix first when planned, then the right content of every target
    def _write(self, turns: list[Turn], state: "_State") -> Intent | None:
        if self.plan.mistake and not state.writes_tried:
            wrong = self._wrong_fix()
            if wrong is not None:
                return Write(wrong.path, wrong.content, state.last_read(turns, wrong.path), mistake=wrong)
        for path in self.k.targets:
            wanted = state.intended.get(path)
            if wanted is not None and state.content[path] != wanted and path not in state.refused:
                return Write(path, wanted, state.last_read(turns, path))
        return None

    def _finish(self, turns: list[Turn], state: "_State") -> Finish:
        if not state.done:
            return Finish(f"Could not fix it: {state.gave_up or 'the fix did not pass the tests'}.")
        changes = []
        for path in self.k.targets:
            for old, new in _changed_lines(self.k.buggy.get(path, ""), state.content[path])[:3]:
                changes.append(f"in {path}, `{old}` -> `{new}`" if old and new else
                               f"in {path}, added `{new}`" if new else f"in {path}, removed `{old}`")
        tested = " The tests pass." if state.last_tests == "pass" else ""
        recovered = " My first attempt failed the tests, so I re-read the code and corrected it." if state.failures else ""
        return Finish(f"Fixed the bug: {'; '.join(changes) or 'no change was needed'}.{recovered}{tested}")


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    pairs = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        olds, news = [s.strip() for s in a[i1:i2]], [s.strip() for s in b[j1:j2]]
        for n in range(max(len(olds), len(news))):
            pairs.append((olds[n] if n < len(olds) else "", news[n] if n < len(news) else ""))
    return pairs


@dataclass
class _State:
    """What the files hold and what the teacher wants them to hold, replayed from the conversation."""

    content: dict[str, str]
    intended: dict[str, str]
    last_write: dict[str, int]  # path -> index of the last successful write
    refused: set[str] = field(default_factory=set)  # target paths whose right write came back refused
    writes_tried: int = 0  # write attempts, refused ones included
    failures: int = 0  # writes (or finals) that the tests failed, and refused writes
    last_tests: str | None = None
    done: bool = False
    gave_up: str | None = None

    @classmethod
    def replay(cls, k: TaskKnowledge, turns: list[Turn]) -> "_State":
        state = cls(content={p: k.buggy.get(p, "") for p in k.targets}, intended=dict(k.fixes), last_write={})
        failed: set[str] = set()  # "fix" / "reference": right contents that the tests rejected
        for index, turn in enumerate(turns):
            intent = turn.intent
            if isinstance(intent, Write):
                state.writes_tried += 1
                if not turn.ok:
                    state.failures += 1
                    if intent.path in state.intended and intent.content == state.intended[intent.path]:
                        state.refused.add(intent.path)
                        state.gave_up = f"writing {intent.path} failed ({turn.result.splitlines()[0][:200]})"
                    continue
                if intent.path in state.content:
                    state.content[intent.path] = intent.content
                    state.last_write[intent.path] = index
            if turn.tests is None:
                continue
            state.last_tests = turn.tests
            if turn.tests == "fail":
                state.failures += 1
                if state.content == k.fixes:
                    failed.add("fix")
                if state.content == {p: k.reference.get(p, k.fixes[p]) for p in k.targets}:
                    failed.add("reference")
        if "fix" in failed:  # the right fix failed after all: try the full reference, once
            reference = {p: k.reference.get(p, k.fixes[p]) for p in k.targets}
            if reference != k.fixes and "reference" not in failed:
                state.intended = reference
            else:
                state.intended, state.gave_up = {}, "the reference fix failed the tests too"
        state.done = bool(state.intended) and state.content == state.intended and state.last_tests != "fail"
        return state

    def last_read(self, turns: list[Turn], path: str) -> str | None:
        """The text of the last full read of `path` (None if it was never read in full)."""
        for turn in reversed(turns):
            if isinstance(turn.intent, Read) and turn.intent.path == path and turn.ok and not turn.truncated:
                return turn.result
        return None

"""The deterministic train/test split, and the check that derived suites were not edited by hand.

A task's side is a pure function of its split key (PROTOCOL.md §4): its id, or for a derived task (one
`suite synth` made from another task's program) the id of the task its program came from. Adding or
removing other tasks never moves a task, every machine derives byte-identical files, and every mutant
of a held-out program is held out too. A derived suite records its parent (id,
path relative to the derived file, sha256 of the parent's bytes), the rule, its side and train_pct;
`check_suite_file` re-derives it from the parent and reports every difference.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..digest import file_sha256
from .task import Suite, SuiteError, TaskSpec, load_suite, save_suite, suite_bytes

SPLIT_RULE = "int(md5(task_id).hexdigest(), 16) % 100 < train_pct -> train"  # task_id: the task's split key
SIDES = ("train", "test")
DEFAULT_TRAIN_PCT = 80  # `suite split`'s default; the side of a task in a suite that was never split


def task_side(task_id: str, train_pct: int) -> str:
    """The side of a split key (a task id, or the id of the task a derived task's program came from)."""
    bucket = int(hashlib.md5(task_id.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < train_pct else "test"


def split_key_of(task: TaskSpec) -> str:
    return task.split_key or task.task_id


def suite_side_of(suite: Suite, task_id: str) -> str:
    """The side of a task of `suite`: what the suite records (a derived or synthesized suite), else the
    rule on its split key at the suite's train_pct (or the default), whatever file the task comes from."""
    key = task_id
    for task in suite.tasks:
        if task.task_id == task_id:
            if task.split in SIDES:
                return task.split
            key = split_key_of(task)
    pct = int((suite.derived_from or {}).get("train_pct", DEFAULT_TRAIN_PCT))
    return task_side(key, pct)


def held_out_ids(suite: Suite) -> list[str]:
    """Tasks of `suite` that are on the test side: never trained on, never evaluated with the oracle."""
    return [t for t in suite.task_ids if suite_side_of(suite, t) == "test"]


def trace_is_held_out(task_id: str, split: str | None, split_key: str | None = None) -> bool:
    """For traces: their recorded split, or the rule on their split key (else their task id) at the
    default train_pct when they have none."""
    if split in SIDES:
        return split == "test"
    return task_side(split_key or task_id, DEFAULT_TRAIN_PCT) == "test"


def derived_path(parent_path: Path, side: str) -> Path:
    """eval/suites/quixbugs_suite.json -> eval/suites/quixbugs_{side}_suite.json (beside the parent)."""
    stem = parent_path.stem
    if stem.endswith("_suite"):
        stem = stem[: -len("_suite")]
    return parent_path.with_name(f"{stem}_{side}_suite.json")


def derive(parent: Suite, parent_path: Path, side: str, train_pct: int, out_path: Path) -> Suite:
    """The suite holding the parent's tasks on `side`, each marked with its split."""
    if parent.derived_from is not None:
        raise SuiteError(f"{parent_path} is itself a derived suite; split its parent {parent.derived_from.get('path')} instead")
    tasks = tuple(replace(t, split=side) for t in parent.tasks if task_side(split_key_of(t), train_pct) == side)
    parent_rel = Path(os.path.relpath(parent_path.resolve(), out_path.resolve().parent)).as_posix()
    return replace(
        parent,
        suite_id=f"{parent.suite_id}_{side}",
        tasks=tasks,
        path=None,
        derived_from={
            "suite_id": parent.suite_id,
            "path": parent_rel,
            "sha256": file_sha256(parent_path),
            "rule": SPLIT_RULE,
            "side": side,
            "train_pct": train_pct,
        },
    )


@dataclass(frozen=True)
class SplitResult:
    paths: dict[str, Path]
    counts: dict[str, int]


def split_suite_file(parent_path: Path, train_pct: int) -> SplitResult:
    if not 0 <= train_pct <= 100:
        raise SuiteError(f"--train-pct must be between 0 and 100, got {train_pct}")
    parent_path = Path(parent_path)
    parent = load_suite(parent_path)
    _reject_duplicate_ids(parent)
    paths, counts = {}, {}
    for side in SIDES:
        out = derived_path(parent_path, side)
        suite = derive(parent, parent_path, side, train_pct, out)
        save_suite(suite, out)
        paths[side], counts[side] = out, len(suite.tasks)
    return SplitResult(paths=paths, counts=counts)


def _reject_duplicate_ids(suite: Suite) -> None:
    seen: set[str] = set()
    for task_id in suite.task_ids:
        if task_id in seen:
            raise SuiteError(f"suite {suite.suite_id!r} lists task {task_id!r} twice")
        seen.add(task_id)


def check_derived(path: Path) -> list[str]:
    """Problems found when re-deriving `path` from its parent; empty when the file is exactly right."""
    path = Path(path)
    suite = load_suite(path)
    meta = suite.derived_from
    if meta is None:
        return []
    missing = [k for k in ("path", "sha256", "side", "train_pct") if k not in meta]
    if missing:
        return [f"derived_from lacks {', '.join(missing)}"]
    if meta.get("rule") != SPLIT_RULE:
        return [f"unknown split rule {meta.get('rule')!r} (expected {SPLIT_RULE!r})"]
    parent_path = (path.parent / meta["path"]).resolve()
    if not parent_path.is_file():
        return [f"parent suite {meta['path']} not found (looked at {parent_path})"]
    problems = []
    if file_sha256(parent_path) != meta["sha256"]:
        problems.append(f"parent {meta['path']} changed since the split (sha256 differs): run `repo-agent suite split` again")
    expected = derive(load_suite(parent_path), parent_path, meta["side"], int(meta["train_pct"]), path)
    problems += _compare_tasks(suite, expected)
    if not problems and suite_bytes(expected, path) != path.read_bytes():
        problems.append("file differs from what `repo-agent suite split` writes (edited by hand?)")
    return problems


def _compare_tasks(actual: Suite, expected: Suite) -> list[str]:
    side = expected.derived_from["side"]
    have = {t.task_id: t for t in actual.tasks}
    want = {t.task_id: t for t in expected.tasks}
    problems = [f"task {tid} is not on the {side} side by the rule" for tid in sorted(set(have) - set(want))]
    problems += [f"task {tid} belongs on the {side} side but is missing" for tid in sorted(set(want) - set(have))]
    problems += [f"task {tid} differs from its parent record" for tid in sorted(set(have) & set(want)) if have[tid] != want[tid]]
    if len(have) != len(actual.tasks):
        problems.append("a task id appears twice")
    return problems


def check_overlap(paths: list[Path]) -> list[str]:
    """Derived suites of the same parent must not share a task."""
    owners: dict[tuple[str, str], Path] = {}
    problems = []
    for path in paths:
        suite = load_suite(path)
        parent = (suite.derived_from or {}).get("suite_id")
        if parent is None:
            continue
        for task_id in suite.task_ids:
            key = (parent, task_id)
            if key in owners and owners[key] != path:
                problems.append(f"task {task_id} is in both {owners[key].name} and {path.name}")
            owners.setdefault(key, path)
    return problems


# --- shards: the same kind of partition, for running one suite on many machines -----------------------


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N), 1 <= K <= N; raises ValueError with what is wrong."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"a shard is K/N, e.g. 2/8; got {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {text}: K must be between 1 and N")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The 1-based shard of a task id (or a program's key): md5, so it depends on nothing else."""
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) % count + 1


def shard_suite(suite: Suite, shard: tuple[int, int]) -> Suite:
    """The tasks of `suite` in shard K of N (every rollout of a task stays in its task's shard)."""
    index, count = shard
    return replace(suite, tasks=tuple(t for t in suite.tasks if shard_of(t.task_id, count) == index))


def sample_suite(suite: Suite, count: int, seed: int, leave_out: frozenset[str] = frozenset()) -> Suite:
    """`count` tasks of `suite` (0: all) in a seeded order of their ids, without the `leave_out` ids.

    The order depends only on the ids and the seed, so for one seed a smaller sample is a subset of a
    larger one (a learning curve's points are nested). Raises SuiteError when too few tasks remain."""
    import random

    order = sorted(t.task_id for t in suite.tasks if t.task_id not in leave_out)
    random.Random(seed).shuffle(order)
    if count > len(order):
        raise SuiteError(f"{suite.suite_id}: {count} tasks asked for, {len(order)} available"
                         + (f" ({len(leave_out)} left out)" if leave_out else ""))
    chosen = set(order[:count] if count else order)
    return replace(suite, tasks=tuple(t for t in suite.tasks if t.task_id in chosen),
                   source={**suite.source, "sample": {"count": len(chosen), "seed": seed, "of": len(suite.tasks),
                                                      "left_out": sorted(leave_out & {t.task_id for t in suite.tasks})}})

"""`suite synth`: buggy training tasks made from correct programs, each proven by the sealed verdict.

For every source program (synth_sources.py) on the requested side of the split:
1. the program itself must pass its tests in one sealed run, which also records its expected tests
   (shared by every mutant of it);
2. the mutation operators (mutation_ops.py) propose mutants (syntactically valid, only the mutated lines
   differ), at most --max-changed-lines each; mutants with the same syntax tree as the program or as
   an earlier mutant are dropped as duplicates; the rest are shuffled per operator (--seed) and taken
   round-robin across operators, so one program yields bugs of different kinds;
3. each candidate gets one sealed run (full, stopping only at a test over its CPU budget); it is kept
   only if at least one expected test fails and, where the program has more than one test, at least
   one still passes. Equivalent mutants (everything passes), total breaks (nothing passes; kept with
   --keep-total-breaks), mutants over the CPU budget and runs with integrity problems are dropped and
   counted. A program stops at --per-program kept tasks or --max-tries candidates.

Every kept task records its source, operator, line(s), failing and passing tests, a difficulty label
and its minimal fix (the reverse edit, which restores the program byte for byte); its split key is its
source's id, so it lands on its source's side. The suite is a normal suite of kind `synth`; its files
live in a folder beside the suite file (`NAME.files/`: `sources/` holds each program's reference,
`tasks/` one workspace per task). Times go to the `NAME.synth.json` sidecar only, so two runs with the
same settings and the same verdicts write the same suite byte for byte. `NAME.synth-progress.jsonl`
records every verdict as it comes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_json
from ..workspace import TaskWorkspace
from . import minimal
from .minimal import MinimalFix
from .mutation_ops import OPERATOR_CLASS, OPERATORS, Mutant, mutants, normalized
from .synth_sources import SourceProgram, load_sources
from .task import Suite, TaskSpec, TestSpec, save_suite

SYNTH_KIND = "synth"
DROP_REASONS = ("duplicate", "equivalent", "total_break", "over_budget", "error", "no_failure")


class SynthError(ValueError):
    """The request cannot be served as given; the message says why and what to do."""


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    per_program: int = 8
    operators: tuple[str, ...] = OPERATORS
    max_changed_lines: int = 3
    max_tries: int = 40  # candidates validated per program at most
    keep_total_breaks: bool = False
    held_out: bool = False  # synthesize from test-side programs: an evaluation-only set
    per_test_timeout: float = 2.0  # CPU seconds per test of every synthesized task
    num_workers: int = 2
    sandbox: str = "auto"

    def settings(self) -> dict[str, Any]:
        """What decides the suite's content (not how fast it is made)."""
        return {"seed": self.seed, "per_program": self.per_program, "operators": list(self.operators),
                "max_changed_lines": self.max_changed_lines, "max_tries": self.max_tries,
                "keep_total_breaks": self.keep_total_breaks, "held_out": self.held_out,
                "per_test_timeout": self.per_test_timeout}


@dataclass
class SourceResult:
    source: SourceProgram
    problem: str | None = None  # why the program made no task at all
    candidates: int = 0
    tried: Counter = field(default_factory=Counter)  # operator -> candidates validated
    kept: list[TaskSpec] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    dropped_by_operator: Counter = field(default_factory=Counter)  # (operator, reason) -> count
    seconds: float = 0.0


def slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", key).strip("_")


def ordered_candidates(source: SourceProgram, options: SynthOptions) -> tuple[list[Mutant], int]:
    """The candidates of one program in the order they are tried, and how many duplicates were dropped."""
    found = [m for m in mutants(source.program, options.operators, source.mutable_rows)
             if len(m.rows) <= options.max_changed_lines]
    seen = {normalized(source.program)}
    by_operator: dict[str, list[Mutant]] = {}
    duplicates = 0
    for mutant in found:
        form = normalized(mutant.text)
        if form in seen:
            duplicates += 1
            continue
        seen.add(form)
        by_operator.setdefault(mutant.operator, []).append(mutant)
    rng = random.Random(f"{options.seed}:{source.key}")
    operators = sorted(by_operator)
    rng.shuffle(operators)
    for name in operators:
        rng.shuffle(by_operator[name])
    ordered: list[Mutant] = []
    while any(by_operator.values()):
        for name in operators:
            if by_operator[name]:
                ordered.append(by_operator[name].pop(0))
    return ordered, duplicates


class ProgressLog:
    """The verdicts of a run, appended as they come (one JSON line each); a killed run reads them back."""

    def __init__(self, path: Path, settings: dict[str, Any], redo: bool):
        self.path = path
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        if redo:
            path.unlink(missing_ok=True)
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            header = _json_or_none(lines[0]) if lines else None
            if header is None or header.get("settings") != settings:
                raise SynthError(f"{path} records a run with other settings ({(header or {}).get('settings')}); "
                                 "pass --redo to start over")
            for line in lines[1:]:
                record = _json_or_none(line)
                if record is not None:  # a torn last line (the run was killed mid-write) is redone
                    self.records[(record["source"], record["candidate"])] = record
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": settings}) + "\n", encoding="utf-8")
        self._handle = path.open("a", encoding="utf-8")

    def get(self, source: str, candidate: str) -> dict[str, Any] | None:
        return self.records.get((source, candidate))

    def add(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        self.records[(record["source"], record["candidate"])] = record

    def close(self) -> None:
        self._handle.close()


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Synthesizer:
    """One `suite synth` run: sources -> validated tasks -> the suite file and its folder."""

    def __init__(self, suite_id: str, out: Path, options: SynthOptions, redo: bool = False,
                 on_candidate: Callable[[], None] | None = None):
        self.suite_id, self.out, self.options = suite_id, Path(out), options
        self.root = self.out.with_name(self.out.stem + ".files")
        self.sidecar = self.out.with_name(self.out.stem + ".synth.json")
        if redo and self.root.exists():
            shutil.rmtree(self.root)
        self.log = ProgressLog(self.out.with_name(self.out.stem + ".synth-progress.jsonl"), options.settings(), redo)
        self.on_candidate = on_candidate or (lambda: None)

    # --- one program -----------------------------------------------------------------------------

    def _write(self, folder: Path, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")

    def _source_task(self, source: SourceProgram) -> TaskSpec:
        key = slug(source.key)
        self._write(self.root / "sources" / key / "workspace", {**dict(source.files), source.program_path: source.program})
        self._write(self.root / "sources" / key / "reference", {source.program_path: source.program})
        return TaskSpec(
            task_id=f"{self.suite_id}/source/{key}", goal=source.goal,
            files=tuple(sorted([p for p, _ in source.files] + [source.program_path])),
            target_files=(source.program_path,),
            reference=((source.program_path, f"sources/{key}/reference/{source.program_path}"),),
            test=TestSpec(args=source.test_args, per_test_timeout=self.options.per_test_timeout),
            base=f"sources/{key}/workspace", editable=source.editable, protected=source.protected,
            split="test" if self.options.held_out else "train", split_key=source.key)

    def _suite(self, tasks: tuple[TaskSpec, ...]) -> Suite:
        return Suite(self.suite_id, SYNTH_KIND, self.root.resolve(), tasks)

    def _sealed(self, task: TaskSpec, program: str | None, stop_on_timeout: bool = False):
        with TaskWorkspace.create(self._suite((task,)), task, self.options.sandbox) as env:
            if program is not None:
                (env.root / task.target_files[0]).write_text(program, encoding="utf-8")
            return env.run_tests(fail_fast=False, stop_on_timeout=stop_on_timeout)

    def _source_verdict(self, source: SourceProgram, task: TaskSpec) -> dict[str, Any]:
        known = self.log.get(source.key, "source")
        if known is not None:
            return known
        report = self._sealed(task, None)
        record: dict[str, Any] = {"source": source.key, "candidate": "source", "ok": report.ok, "summary": report.summary}
        if report.ok:
            record["expected"] = [[t, (report.collected.get(t) or {}).get("params"), (report.collected.get(t) or {}).get("defined_in")]
                                  for t, s in sorted(report.tests.items()) if s == "passed"]
            record["cpu_s"] = max(report.cpu.values(), default=0.0)
        self.log.add(record)
        return record

    def _candidate_verdict(self, source: SourceProgram, task: TaskSpec, mutant: Mutant) -> dict[str, Any]:
        digest = hashlib.sha256(mutant.text.encode("utf-8")).hexdigest()[:20]
        known = self.log.get(source.key, digest)
        if known is not None:
            return known
        started = time.monotonic()
        report = self._sealed(task, mutant.text, stop_on_timeout=True)
        expected = [t for t, _, _ in task.expected_tests or ()]
        failing = [t for t in expected if report.tests.get(t) in ("failed", "error")]
        passing = [t for t in expected if report.tests.get(t) == "passed"]
        if report.integrity:
            verdict = "error"
        elif report.timeouts or report.run_timed_out:
            verdict = "over_budget"
        elif report.ok:
            verdict = "equivalent"
        elif not failing:
            verdict = "total_break" if not passing else "no_failure"
        elif not passing and len(expected) > 1:
            verdict = "total_break"
        else:
            verdict = "kept"
        record = {"source": source.key, "candidate": digest, "verdict": verdict, "failing": failing,
                  "passing": passing, "seconds": round(time.monotonic() - started, 3)}
        self.log.add(record)
        return record

    def process(self, source: SourceProgram) -> SourceResult:
        result = SourceResult(source)
        started = time.monotonic()
        try:
            task = self._source_task(source)
            verdict = self._source_verdict(source, task)
            if not verdict.get("ok"):
                result.problem = f"the program does not pass its own tests ({verdict.get('summary')})"
                return result
            if verdict.get("cpu_s", 0.0) * 10 > self.options.per_test_timeout:
                result.problem = (f"its slowest test takes {verdict['cpu_s']:.2f} s of CPU, more than a tenth of the "
                                  f"{self.options.per_test_timeout:g} s budget (--per-test-timeout)")
                return result
            task = replace(task, expected_tests=tuple((t, p, d) for t, p, d in verdict["expected"]))
            candidates, duplicates = ordered_candidates(source, self.options)
            result.candidates = len(candidates)
            result.dropped["duplicate"] = duplicates
            for index, mutant in enumerate(candidates[:self.options.max_tries]):
                if len(result.kept) >= self.options.per_program:
                    break
                record = self._candidate_verdict(source, task, mutant)
                self.on_candidate()
                result.tried[mutant.operator] += 1
                kept = record["verdict"] == "kept" or (record["verdict"] == "total_break" and self.options.keep_total_breaks
                                                       and record["failing"])
                if kept:
                    result.kept.append(self._task(source, task, mutant, index, record))
                else:
                    result.dropped[record["verdict"]] += 1
                    result.dropped_by_operator[(mutant.operator, record["verdict"])] += 1
        finally:
            result.seconds = time.monotonic() - started
        return result

    def _task(self, source: SourceProgram, source_task: TaskSpec, mutant: Mutant, index: int, record: dict[str, Any]) -> TaskSpec:
        key = f"{slug(source.key)}__{mutant.operator}_{index:03d}"
        self._write(self.root / "tasks" / key, {**dict(source.files), source.program_path: mutant.text})
        proposal = minimal.propose({source.program_path: mutant.text}, {source.program_path: source.program})
        if proposal.proven and minimal.fixed_texts(proposal, {source.program_path: mutant.text})[source.program_path] == source.program:
            fix = proposal
        else:
            fix = MinimalFix(minimal.FALLBACK, reason="the reverse edit is not a code-line edit")
        expected = len(source_task.expected_tests or ())
        info = {"source": source.key, "origin": source.origin, "operator": mutant.operator, "lines": list(mutant.lines),
                "detail": mutant.detail, "failing": record["failing"], "passing": record["passing"],
                "difficulty": {"operator_class": OPERATOR_CLASS[mutant.operator], "changed_lines": len(mutant.rows),
                               "failing_share": round(len(record["failing"]) / expected, 3) if expected else None}}
        return replace(source_task, task_id=f"{self.suite_id}/{key}", base=f"tasks/{key}", meta=(("synth", info),),
                       minimal_fix=fix)

    # --- the run -----------------------------------------------------------------------------------

    def run(self, sources: list[SourceProgram], shard: tuple[int, int] | None = None,
            programs: int | None = None) -> tuple[Suite, list[SourceResult]]:
        """Synthesize from `sources` (with `shard`: those of shard K/N of the `programs` selected)."""
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.options.num_workers)) as pool:
                results = list(pool.map(self.process, sources))
        finally:
            self.log.close()
        tasks = tuple(sorted((t for r in results for t in r.kept), key=lambda t: t.task_id))
        suite = replace(self._suite(tasks), source={
            "kind": SYNTH_KIND, "from": sorted({s.origin for s in sources}), "programs": programs or len(sources),
            "held_out": self.options.held_out, **self.options.settings(),
            **({"shard": {"index": shard[0], "count": shard[1]}} if shard else {})})
        save_suite(suite, self.out)
        atomic_write_json(self.sidecar, measurements(results, time.monotonic() - started, self.options))
        return suite, results


def select_sources(specs: list[str], held_out: bool) -> tuple[list[SourceProgram], list[str]]:
    """The programs of every --from, on the requested side only; notes on what was left aside. A spec
    all of whose programs are on the other side is refused (training on held-out programs would leak)."""
    side = "test" if held_out else "train"
    chosen: dict[str, SourceProgram] = {}
    notes = []
    for spec in specs:
        try:
            found = load_sources(spec)
        except (OSError, ValueError) as exc:
            raise SynthError(f"--from {spec}: {exc}") from None
        here = [s for s in found if s.side == side]
        if not here:
            raise SynthError(f"--from {spec}: all {len(found)} programs are on the {'train' if held_out else 'test'} side of the "
                             "split" + ("" if held_out else "; mutants of held-out programs can only make a labelled "
                                        "evaluation set (--held-out)"))
        if len(here) < len(found):
            notes.append(f"{spec}: {len(found) - len(here)} of {len(found)} programs are on the "
                         f"{'train' if held_out else 'test'} side and were left out")
        for source in here:
            chosen.setdefault(source.key, source)
    return list(chosen.values()), notes


def _no_task_reason(result: SourceResult) -> str:
    """Why a program that was tried made no task: what its candidates were dropped for."""
    if not result.dropped:
        return "no mutation operator applies to it"
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(result.dropped.items(), key=lambda kv: -kv[1]))
    return f"every candidate was dropped ({reasons})"


def measurements(results: list[SourceResult], wall_s: float, options: SynthOptions) -> dict[str, Any]:
    """The sidecar: yields per operator and per source, and the times (which differ between machines)."""
    operators: dict[str, dict[str, Any]] = {}
    for r in results:
        for operator, count in r.tried.items():
            entry = operators.setdefault(operator, {"tried": 0, "kept": 0, "dropped": Counter()})
            entry["tried"] += count
        for task in r.kept:
            operators[dict(task.meta)["synth"]["operator"]]["kept"] += 1
        for (operator, reason), count in r.dropped_by_operator.items():
            operators[operator]["dropped"][reason] += count
    valid = sum(len(r.kept) for r in results)
    dropped = Counter()
    for r in results:
        dropped.update(r.dropped)
    return {
        "settings": options.settings(), "num_workers": options.num_workers, "wall_time_s": round(wall_s, 1),
        "programs": len(results),
        "programs_without_tasks": {r.source.key: r.problem or _no_task_reason(r) for r in results if r.problem or not r.kept},
        "valid_tasks": valid, "seconds_per_valid_task": round(wall_s / valid, 3) if valid else None,
        "candidates_tried": sum(sum(r.tried.values()) for r in results), "dropped": dict(dropped),
        "per_operator": {k: {"tried": v["tried"], "kept": v["kept"], "yield": round(v["kept"] / v["tried"], 3) if v["tried"] else None,
                             "dropped": dict(v["dropped"])} for k, v in sorted(operators.items())},
        "per_origin": _per_origin(results),
        "per_source": {r.source.key: {"candidates": r.candidates, "tried": sum(r.tried.values()), "kept": len(r.kept),
                                      "dropped": dict(r.dropped), "seconds": round(r.seconds, 2), "problem": r.problem}
                       for r in results},
    }


def _per_origin(results: list[SourceResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = out.setdefault(r.source.origin, {"programs": 0, "tried": 0, "kept": 0})
        entry["programs"] += 1
        entry["tried"] += sum(r.tried.values())
        entry["kept"] += len(r.kept)
    for entry in out.values():
        entry["yield"] = round(entry["kept"] / entry["tried"], 3) if entry["tried"] else None
    return out


def merge_synth_suites(paths: list[Path], out: Path) -> Suite:
    """The shards of one `suite synth --shard K/N` run joined into the suite the unsharded run writes:
    refuses other settings, a shard twice, a missing shard and shared tasks."""
    from .task import SuiteError, load_suite

    suites = [load_suite(p) for p in paths]
    if not suites:
        raise SynthError("no suite files given")
    first = suites[0]
    info = first.source.get("shard")
    if first.kind != SYNTH_KIND or not info:
        raise SynthError(f"{paths[0]} is not a shard of `suite synth` (its source records no --shard)")
    settings = {k: v for k, v in first.source.items() if k != "shard"}
    seen: dict[int, Path] = {}
    owner: dict[str, Path] = {}
    for path, suite in zip(paths, suites):
        shard = suite.source.get("shard")
        if suite.kind != SYNTH_KIND or not shard:
            raise SynthError(f"{path} is not a shard of `suite synth`")
        if shard["count"] != info["count"] or {k: v for k, v in suite.source.items() if k != "shard"} != settings \
                or suite.suite_id != first.suite_id:
            raise SynthError(f"{path} was made with other settings or another split than {paths[0]}")
        if shard["index"] in seen:
            raise SynthError(f"shard {shard['index']}/{shard['count']} is given twice ({seen[shard['index']]} and {path})")
        seen[shard["index"]] = path
        for task_id in suite.task_ids:
            if task_id in owner:
                raise SynthError(f"task {task_id} is in two shards ({owner[task_id]} and {path})")
            owner[task_id] = path
    missing = sorted(set(range(1, info["count"] + 1)) - set(seen))
    if missing:
        raise SynthError("missing shard(s) " + ", ".join(f"{m}/{info['count']}" for m in missing))
    out = Path(out)
    root = out.with_name(out.stem + ".files")
    if out.exists() or root.exists():
        raise SynthError(f"{out} (or {root}) exists: merge into a new suite file")
    for suite in suites:
        shutil.copytree(suite.root, root, dirs_exist_ok=True)
    tasks = tuple(sorted((t for s in suites for t in s.tasks), key=lambda t: t.task_id))
    merged = replace(first, tasks=tasks, root=root.resolve(), path=None, source=settings)
    try:
        save_suite(merged, out)
    except SuiteError as exc:  # pragma: no cover - save_suite only fails on I/O
        raise SynthError(str(exc)) from None
    return merged

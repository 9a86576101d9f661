"""What local SFT and DPO share, none of it needing torch: the run config, dataset reading and
conversion to TRL's conversational shapes, length filtering, provenance (task ids trained on), the
training log and its loss curve.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..atomic import atomic_write_text
from .checkpoints import CHECKPOINTS, INCOMPLETE  # noqa: F401  (re-exported: where a run keeps its checkpoints)

CONFIG_FILE = "train_config.json"
LOG_FILE = "training_log.jsonl"
LOSS_PNG = "loss.png"
TASKS_FILE = "trained_tasks.json"
DATASET_HASH_FILE = "dataset.sha256"
_KEPT_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")  # what chat templates read; drops "weight"


class TrainDataError(ValueError):
    """The dataset cannot be trained on; the message lists what to fix."""


@dataclass
class LocalTrainConfig:
    """One `finetune local sft|dpo` run. Serialized into OUTPUT/train_config.json (with TRL's own args)."""

    method: str  # sft | dpo
    model: str
    dataset: str
    output: str
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    batch_size: int = 2
    grad_accum: int = 1
    max_seq_len: int | None = None  # None: the longest example (nothing is cut)
    seed: int = 0
    report_to: str = "none"
    beta: float = 0.1  # dpo only
    from_adapter: str | None = None  # dpo only: continue from this SFT adapter
    packing: bool = False
    padding_free: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 50
    task_ids_file: str | None = None
    trained_tasks_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # filled in by the run: lengths, drops, hashes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_json(path: Path, data: Any) -> None:
    """Atomic: a crash never leaves half a file that a later run would trust."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")




def validate_dataset(path: Path, method: str) -> str:
    """Refuse a file the data checker finds fault with (every problem, with line numbers). Returns its kind."""
    from ..data.check import check_file

    report = check_file(path, "auto", use_sdk=False)
    wanted = ("sft", "sft-trl") if method == "sft" else ("pref", "pref-trl")
    if report.kind not in wanted and report.count:
        raise TrainDataError(f"{path} holds {report.kind!r} rows; `finetune local {method}` needs {' or '.join(wanted)} rows")
    if not report.ok:
        listed = "\n".join(f"  {e}" for e in report.errors)
        more = f"\n  ... and {report.error_count - len(report.errors)} more" if report.error_count > len(report.errors) else ""
        raise TrainDataError(f"{path} has {report.error_count} problem(s) (see `repo-agent data check {path}`):\n{listed}{more}")
    return report.kind


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise TrainDataError(f"{path} line {number}: not valid JSON ({exc})") from None
    return rows


def _clean(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: m[k] for k in _KEPT_KEYS if k in m} for m in messages]


def _tools_column(tools: Any) -> str | None:
    # A JSON string, not nested structs: Arrow would otherwise merge the schemas of different rows.
    return json.dumps(tools) if tools else None


def sft_row_to_trl(row: dict[str, Any]) -> dict[str, Any]:
    """Chat row {"messages": [...]} -> {"prompt": messages[:-1], "completion": [last]}: TRL then puts loss
    on the completion only. Together's per-message "weight" keys are dropped. TRL rows pass through."""
    if "messages" in row:
        messages = _clean(row["messages"])
        prompt, completion = messages[:-1], messages[-1:]
    else:
        prompt, completion = _clean(row["prompt"]), _clean(row["completion"])
    return {"prompt": prompt, "completion": completion, "tools": _tools_column(row.get("tools"))}


def pair_row_to_trl(row: dict[str, Any]) -> dict[str, Any]:
    """Together preference row -> TRL DPO row {"prompt", "chosen", "rejected"}. TRL rows pass through."""
    if "input" in row:
        prompt, tools = row["input"]["messages"], row["input"].get("tools")
        chosen, rejected = row["preferred_output"], row["non_preferred_output"]
    else:
        prompt, tools, chosen, rejected = row["prompt"], row.get("tools"), row["chosen"], row["rejected"]
    return {"prompt": _clean(prompt), "chosen": _clean(chosen), "rejected": _clean(rejected), "tools": _tools_column(tools)}


def conversation_lengths(rows: list[dict[str, Any]], count_tokens: Callable[[list[dict[str, Any]], Any], int]) -> list[int]:
    """Tokens of the longest full sequence of each TRL row (prompt + completion, or + the longer side)."""
    lengths = []
    for row in rows:
        tools = json.loads(row["tools"]) if row.get("tools") else None
        endings = [row["completion"]] if "completion" in row else [row["chosen"], row["rejected"]]
        lengths.append(max(count_tokens(row["prompt"] + ending, tools) for ending in endings))
    return lengths


@dataclass
class LengthPlan:
    max_length: int
    kept: list[int]  # row indices
    dropped: list[int]
    longest: int


def plan_lengths(lengths: list[int], max_seq_len: int | None, context: int | None) -> LengthPlan:
    """TRL cuts over-long sequences from the END, which would cut off the very action to learn. So the
    limit is set to the longest example, or examples over an explicit --max-seq-len are dropped (and
    counted). The model's context is a hard ceiling either way."""
    limit = max_seq_len or max(lengths, default=1)
    if context:
        limit = min(limit, context)
    kept = [i for i, n in enumerate(lengths) if n <= limit]
    dropped = [i for i, n in enumerate(lengths) if n > limit]
    return LengthPlan(max_length=limit, kept=kept, dropped=dropped, longest=max(lengths, default=0))


def training_provenance(dataset: Path, task_ids: list[str] | None, source: str | None,
                        from_adapter: str | None) -> dict[str, Any] | None:
    """trained_tasks.json of a new adapter: the tasks of its data plus everything the adapter it
    continues from was trained on (an SFT adapter's tasks survive its DPO), and the test policies the
    training rollouts ran under (a student trained on [TESTS ...] lines should see them in evaluation)."""
    from ..data.stats import stats_path

    ids: set[str] = set(task_ids or [])
    policies: set[str] = set()
    try:
        policies |= set((json.loads(stats_path(dataset).read_text(encoding="utf-8")).get("test_policies") or {}))
    except (OSError, ValueError, AttributeError):
        pass
    record: dict[str, Any] = {"source": source}
    if from_adapter and (Path(from_adapter) / TASKS_FILE).is_file():
        previous = json.loads((Path(from_adapter) / TASKS_FILE).read_text(encoding="utf-8"))
        ids |= set(previous.get("task_ids") or [])
        policies |= set(previous.get("test_policies") or [])
        record["from_adapter"] = {"path": str(from_adapter), "task_ids": previous.get("task_ids") or []}
    elif from_adapter:
        record["from_adapter"] = {"path": str(from_adapter), "task_ids": None, "note": f"no {TASKS_FILE}: its tasks are unknown"}
    if task_ids is None and "from_adapter" not in record:
        return None
    return {"task_ids": sorted(ids), **record, "test_policies": sorted(policies), "complete": task_ids is not None}


class TrainingLog:
    """Appends every log record TRL emits as one JSON line (so a crash keeps what was logged)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")

    def keep_until(self, step: int) -> int:
        """Drop the records after `step` (those of steps a resumed run redoes) and any line cut by a
        crash, in one atomic rewrite. Returns how many records were dropped."""
        kept = [r for r in self.records() if isinstance(r.get("step"), int) and r["step"] <= step]
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        atomic_write_text(self.path, "".join(json.dumps(r, default=float) + "\n" for r in kept))
        return len(lines) - len(kept)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
        return out


def plot_loss(records: list[dict[str, Any]], png: Path, title: str) -> bool:
    """Loss over steps as a PNG (matplotlib Agg: no display needed). False when nothing was logged."""
    points = [(r["step"], r["loss"]) for r in records if "loss" in r and "step" in r]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return True

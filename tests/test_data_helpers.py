"""Builders shared by the data tests: real episodes (oracle and scripted models) written as real traces.

No test lives here; other test_data_* modules import these functions (tests/ is on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import BUNDLED_SUITE
from repo_agent.agent import AgentConfig, run_episode
from repo_agent.models.oracle import OracleModel
from repo_agent.models.scripted import ScriptedModel
from repo_agent.suites.task import load_suite

SUITE = load_suite(BUNDLED_SUITE)
FIX_GCD = SUITE.reference_text(SUITE.task("gcd"))["python_programs/gcd.py"]


def episode(trace_dir: Path, name: str, llm: Any, task: str = "gcd", protocol: str = "json", seed: int = 0,
            max_iters: int = 10, test_policy: str = "never") -> dict[str, Any]:
    spec = SUITE.task(task)
    config = AgentConfig(max_iters=max_iters, tool_protocol=protocol, test_policy=test_policy)
    return run_episode(SUITE, spec, llm, config, Path(trace_dir) / "traces" / f"{name}.json", rollout_id=name,
                       rollout_index=seed, seed=seed, provider="test", model="test", tool_protocol=protocol,
                       test_policy=config.test_policy)


def oracle(trace_dir: Path, task: str, seed: int, protocol: str = "json", test_policy: str = "never",
           mistake_rate: float = 0.0, fork_of: int | None = None) -> dict[str, Any]:
    spec = SUITE.task(task)
    name = f"{spec.name}__oracle{seed}__{protocol}" + (f"__{test_policy}" if test_policy != "never" else "")
    model = OracleModel(SUITE, spec, seed, mistake_rate=mistake_rate, fork_of=fork_of)
    return episode(trace_dir, name, model, task, protocol, seed, test_policy=test_policy)


def call(name: str, **args: Any) -> str:
    return json.dumps({"type": "tool_call", "name": name, "args": args}, separators=(",", ":"))


def final(summary: str = "done") -> str:
    return json.dumps({"type": "final", "summary": summary}, separators=(",", ":"))


def scripted(trace_dir: Path, name: str, replies: list[Any], task: str = "gcd", protocol: str = "json",
             ) -> tuple[dict[str, Any], ScriptedModel]:
    model = ScriptedModel(replies)
    return episode(trace_dir, name, model, task, protocol), model


def bad_rollouts(trace_dir: Path, first_oracle_reply: str) -> dict[str, tuple[dict[str, Any], ScriptedModel]]:
    """Scripted rollouts of gcd that make every kind of bad step the pair miner looks for.

    `first_oracle_reply` is an oracle rollout's first reply: repeating it makes a rollout share that
    oracle rollout's state at step 1 and then loop, which is what the `loops` source needs.
    """
    return {
        # prose first (parse error at the shared initial state), a failing read, then a real fix
        "prose_then_fix": scripted(trace_dir, "gcd__prose_then_fix", [
            "Let me look at the code first.",
            call("grep", pattern="def gcd", rel_dir=".", max_matches=50),
            call("read_file", rel_path="python_programs/nope.py"),
            call("read_file", rel_path="python_programs/gcd.py", max_chars=4000),
            call("write_file", rel_path="python_programs/gcd.py", content=FIX_GCD),
            final("Fixed gcd: the recursion swaps the arguments."),
        ]),
        # same first step as an oracle rollout, then the same step again (a loop), then gives up
        "loops": scripted(trace_dir, "gcd__loops", [
            first_oracle_reply, first_oracle_reply, first_oracle_reply, final("gave up"),
        ]),
        # same first step as an oracle rollout, then a read that fails (a tool error at a shared state)
        "missing_file": scripted(trace_dir, "gcd__missing_file", [
            first_oracle_reply, call("read_file", rel_path="python_programs/nope.py"), final("nothing to do"),
        ]),
        # a code fence around a valid call (extra_text), then a wrong fix
        "fenced": scripted(trace_dir, "gcd__fenced", [
            "```json\n" + call("list_files", rel_dir=".") + "\n```",
            call("write_file", rel_path="python_programs/gcd.py", content="def gcd(a, b):\n    return a\n"),
            final("rewrote gcd"),
        ]),
    }


def branch_pair(trace_dir: Path, task: str, leader_seed: int, follower_seed: int, mistake_rate: float = 0.0,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two oracle rollouts (test policy on_write) that share everything up to the first write, where one
    writes a proven-wrong fix and the other the right one (what `--branch-pairs` runs)."""
    leader = oracle(trace_dir, task, leader_seed, test_policy="on_write", mistake_rate=mistake_rate)
    follower = oracle(trace_dir, task, follower_seed, test_policy="on_write", mistake_rate=mistake_rate, fork_of=leader_seed)
    return leader, follower


def tamper_rollout(trace_dir: Path, leader: dict[str, Any]) -> tuple[dict[str, Any], ScriptedModel]:
    """A scripted rollout that follows `leader` up to its first write, then rewrites the test file
    (refused: tests are read-only), then gives up."""
    first_write = next(i for i, s in enumerate(leader["steps"]) if (s["action"] or {}).get("name") == "write_file")
    replies = [s["raw_output"] for s in leader["steps"][:first_write]]
    replies += [call("write_file", rel_path="python_testcases/test_gcd.py", content="def test_gcd():\n    pass\n"),
                final("made the tests pass")]
    model = ScriptedModel(replies)
    return episode(trace_dir, "gcd__tamper", model, "gcd", test_policy="on_write"), model


def golden_fixture(trace_dir: Path) -> dict[str, Any]:
    """The deterministic trace set behind the golden files: 3 oracle rollouts of gcd, a branched pair of
    oracle rollouts (a mistake and the right write from one state) and 5 scripted ones."""
    oracles = [oracle(trace_dir, "gcd", seed) for seed in (0, 1, 2)]
    leader, follower = branch_pair(trace_dir, "gcd", 3, 4)
    bad = bad_rollouts(trace_dir, oracles[0]["steps"][0]["raw_output"])
    bad["tamper"] = tamper_rollout(trace_dir, leader)
    return {"oracles": oracles, "branched": (leader, follower), "bad": bad}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def make_tokenizer(folder: Path) -> Path:
    """A tiny word-level tokenizer with a ChatML-style template, saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["def gcd return a b if tool_call read_file grep final"],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|im_start|>", "<|im_end|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    fast.save_pretrained(folder)
    return Path(folder)

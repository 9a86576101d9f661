"""sft-extract filters and safety: held-out suites refused, corrupt traces skipped and counted, duplicates,
per-task caps and token limits drop (never truncate) and count, and failures never touch the output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import BUNDLED_SUITE
from test_data_helpers import branch_pair, make_tokenizer, oracle, read_jsonl


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    root = tmp_path_factory.mktemp("filter_traces")
    for task, seed in [("gcd", 0), ("gcd", 1), ("fizzbuzz", 0), ("clamp", 2)]:
        oracle(root, task, seed)
    branch_pair(root, "gcd", 3, 4)  # pairs need two writes with different outcomes from one state
    return root


def sft(cli, trace_dir, out, *extra):
    return cli("sft-extract", "--trace-dir", trace_dir, "--output", out, "--allow-held-out", *extra)


def stats_of(out: Path) -> dict:
    return json.loads(out.with_name(out.stem + ".stats.json").read_text())


def test_held_out_suite_is_refused_and_nothing_is_touched(cli, traces, tmp_path):
    out = tmp_path / "sft.jsonl"
    out.write_text("previous content\n")
    result = sft(cli, traces, out, "--split-suite", BUNDLED_SUITE)
    assert result.exit_code == 3
    assert "held-out" in result.output and "bundled/" in result.output
    assert out.read_text() == "previous content\n"
    assert not list(tmp_path.glob(".*tmp*")), "a temp file was left behind"
    result = cli("pairs-extract", "--trace-dir", traces, "--out", tmp_path / "p.jsonl", "--split-suite", BUNDLED_SUITE)
    assert result.exit_code == 3 and not (tmp_path / "p.jsonl").exists()


def test_prefs_refuses_a_held_out_suite_before_running_anything(cli, tmp_path):
    result = cli("prefs", "--suite", BUNDLED_SUITE, "--split-suite", BUNDLED_SUITE, "--llm-provider", "oracle", "--trace-dir", tmp_path / "run",
                 "--out", tmp_path / "p.jsonl")
    assert result.exit_code == 3 and "held-out" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.jsonl").exists()


def test_other_suite_is_accepted(cli, traces, tmp_path):
    other = json.loads(Path(BUNDLED_SUITE).read_text())
    other["tasks"] = [t for t in other["tasks"] if t["task_id"] not in ("bundled/gcd", "bundled/fizzbuzz", "bundled/clamp")]
    other["root"] = str(Path(BUNDLED_SUITE).parent / other["root"])
    test_suite = tmp_path / "test_suite.json"
    test_suite.write_text(json.dumps(other))
    assert sft(cli, traces, tmp_path / "sft.jsonl", "--split-suite", test_suite).exit_code == 0


def test_corrupt_and_unfinished_traces_are_skipped_and_counted(cli, traces, tmp_path):
    messy = tmp_path / "messy"
    shutil.copytree(traces, messy)
    (messy / "traces" / "broken.json").write_text('{"schema": "repo-agent/trace", "steps": [')
    (messy / "traces" / "foreign.json").write_text('{"hello": "world"}')
    unfinished = json.loads(next((messy / "traces").glob("gcd__oracle0*.json")).read_text())
    unfinished["status"] = "running"
    (messy / "traces" / "running.json").write_text(json.dumps(unfinished))
    damaged = dict(unfinished, status="finished", steps=[{"index": 0, "foo": 1}, *unfinished["steps"]])
    (messy / "traces" / "damaged.json").write_text(json.dumps(damaged))
    out = tmp_path / "sft.jsonl"
    assert sft(cli, messy, out).exit_code == 0
    clean = tmp_path / "clean.jsonl"
    assert sft(cli, traces, clean).exit_code == 0
    stats = stats_of(out)
    assert stats["corrupt_traces_skipped"] == 3 and stats["unfinished_traces_skipped"] == 1
    assert any("broken.json" in p for p in stats["problems"])
    assert any("damaged.json" in p and "step 0 has no assistant_message" in p for p in stats["problems"])
    pairs = tmp_path / "pairs.jsonl"
    assert cli("pairs-extract", "--trace-dir", messy, "--out", pairs, "--allow-held-out").exit_code == 0
    assert stats_of(pairs)["corrupt_traces_skipped"] == 3
    assert out.read_bytes() == clean.read_bytes()


def test_exact_duplicates_are_removed_and_counted(cli, traces, tmp_path):
    doubled = tmp_path / "doubled"
    shutil.copytree(traces, doubled)
    source = next((doubled / "traces").glob("fizzbuzz*.json"))
    shutil.copy(source, doubled / "traces" / "zz_copy.json")
    base, dup = tmp_path / "base.jsonl", tmp_path / "dup.jsonl"
    assert sft(cli, traces, base).exit_code == 0 and sft(cli, doubled, dup).exit_code == 0
    steps = len(json.loads(source.read_text())["steps"])
    assert stats_of(dup)["removed"]["duplicate"] == stats_of(base)["removed"].get("duplicate", 0) + steps
    assert dup.read_bytes() == base.read_bytes()


def test_max_per_task_caps_in_trace_order(cli, traces, tmp_path):
    full, capped = tmp_path / "full.jsonl", tmp_path / "capped.jsonl"
    assert sft(cli, traces, full).exit_code == 0
    assert sft(cli, traces, capped, "--max-per-task", "2").exit_code == 0
    full_meta, capped_meta = read_jsonl(full.with_name("full.meta.jsonl")), read_jsonl(capped.with_name("capped.meta.jsonl"))
    tasks = {m["task_id"] for m in full_meta}
    expected = [m for t in sorted(tasks) for m in [x for x in full_meta if x["task_id"] == t][:2]]
    key = lambda m: (m["trace"], m["step_index"])  # noqa: E731
    assert sorted(map(key, capped_meta)) == sorted(map(key, expected))
    assert stats_of(capped)["removed"]["per_task_cap"] == len(full_meta) - len(capped_meta)


def test_max_tokens_drops_long_examples_and_counts_them(cli, traces, tmp_path):
    from transformers import AutoTokenizer

    folder = make_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def tokens(messages):
        ids = tokenizer.apply_chat_template(messages, tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    full = tmp_path / "full.jsonl"
    assert sft(cli, traces, full, "--tokenizer", folder).exit_code == 0
    lengths = [tokens([{k: v for k, v in m.items() if k != "weight"} for m in r["messages"]]) for r in read_jsonl(full)]
    assert stats_of(full)["length_tokens"]["max"] == max(lengths)
    limit = sorted(lengths)[len(lengths) // 2]
    short = tmp_path / "short.jsonl"
    assert sft(cli, traces, short, "--tokenizer", folder, "--max-tokens", str(limit)).exit_code == 0
    kept = read_jsonl(short)
    assert kept == [r for r, n in zip(read_jsonl(full), lengths) if n <= limit]  # dropped whole, never cut
    assert stats_of(short)["removed"]["too_long"] == sum(1 for n in lengths if n > limit) > 0
    result = sft(cli, traces, tmp_path / "x.jsonl", "--max-tokens", "100")
    assert result.exit_code != 0 and "--tokenizer" in result.output


def test_nothing_left_is_an_error_not_an_empty_file(cli, tmp_path):
    from test_data_helpers import call, final, scripted

    scripted(tmp_path / "t", "gcd__gives_up", [call("list_files", rel_dir="."), final("no idea")])
    out = tmp_path / "sft.jsonl"
    result = sft(cli, tmp_path / "t", out)
    assert result.exit_code == 1 and "no examples" in result.output and not out.exists()
    assert "rollout_failed" in result.output
    assert sft(cli, tmp_path / "t", out, "--no-require-success").exit_code == 0
    assert len(read_jsonl(out)) == 2

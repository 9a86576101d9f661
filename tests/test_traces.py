import json

from repo_agent.traces import TraceProblem, TraceWriter, iter_traces, new_trace, redact


def test_redact_removes_secrets_but_keeps_token_counts():
    data = {"api_key": "abc", "OPENAI_API_KEY": "x", "headers": {"Authorization": "Bearer abcdefghijk"},
            "tokens_in": 5, "prompt_tokens": 7, "note": "key sk-abcdefghijklmnop and tgp_v1_abcdefghijkl"}
    out = redact(data)
    assert out["api_key"] == out["OPENAI_API_KEY"] == out["headers"]["Authorization"] == "[redacted]"
    assert out["tokens_in"] == 5 and out["prompt_tokens"] == 7
    assert out["note"] == "key [redacted] and [redacted]"


def test_writer_rewrites_atomically_and_reader_skips_bad_files(tmp_path):
    traces = tmp_path / "traces"
    writer = TraceWriter(traces / "a__r0.json", new_trace(task_id="s/a", prompt_messages=[]))
    writer.add_step({"index": 0})
    assert json.loads((traces / "a__r0.json").read_text())["steps"] == [{"index": 0}]
    writer.finish(stop_reason="final")
    TraceWriter(traces / "b__r0.json", new_trace(task_id="s/b", prompt_messages=[]))  # still running
    (traces / "c__r0.json").write_text('{"schema": "repo-agent/trace", "task_')  # torn by a crash
    (traces / "d__r0.json").write_text('{"hello": 1}')
    assert not list(traces.glob(".*.tmp"))
    problems: list[TraceProblem] = []
    found = [t["task_id"] for _, t in iter_traces(tmp_path, problems=problems)]
    assert found == ["s/a"]
    reasons = sorted(p.reason.split(": ", 1)[1] for p in problems)
    assert reasons[0].startswith("not a repo-agent trace")
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2].startswith("unfinished rollout")

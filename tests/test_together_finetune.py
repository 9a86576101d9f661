"""`repo-agent finetune together` / `finetune status` end to end through the real CLI and the real
`together` SDK, against the local fake Together service (tests/fake_together_server.py). No network."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake_together_server import FAILURE_PLAN, FakeTogether
from repo_agent.cli import app
from repo_agent.protocol import Final, ToolCall, render_action

ROOT = Path(__file__).resolve().parent.parent
SECRET = "tg-secret-key-never-to-be-seen-7f3a"
SYSTEM = "You are a repo-fixing agent. Reply with ONE JSON object."
WAIT_DEADLINE_S = 600  # subprocess waits: far above a slow start on a loaded machine, reached only by a hang


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", SECRET)
    with FakeTogether() as server:
        yield server


def _sft_row(goal: str, actions: list) -> dict:
    """A step example in Together's chat format: every message weighted, 1 only on the last (the target)."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"GOAL:\n{goal}"}]
    for index, action in enumerate(actions):
        messages.append({"role": "assistant", "content": render_action(action)})
        if index < len(actions) - 1:
            messages.append({"role": "user", "content": "[tool_result]\npython_programs/gcd.py"})
    return {"messages": [{**m, "weight": int(i == len(messages) - 1)} for i, m in enumerate(messages)]}


def _sft_file(tmp_path: Path) -> Path:
    listing = ToolCall("list_files", {"rel_dir": ".", "max_files": 200})
    reading = ToolCall("read_file", {"rel_path": "python_programs/gcd.py", "max_chars": 4000})
    rows = [_sft_row("Fix gcd so its tests pass.", [listing]),
            _sft_row("Fix gcd so its tests pass.", [listing, reading]),
            _sft_row("Fix gcd so its tests pass.", [listing, reading, Final("Swapped the arguments of the recursive call.")])]
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pairs_file(tmp_path: Path) -> Path:
    row = {"input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "GOAL:\nFix gcd."}]},
           "preferred_output": [{"role": "assistant", "content": render_action(ToolCall("list_files", {"rel_dir": "."}))}],
           "non_preferred_output": [{"role": "assistant", "content": "Sure! Here is the fix:\n```python\n...```"}]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


def _invoke(fake: FakeTogether, *args: str):
    return CliRunner().invoke(app, ["finetune", *args, "--base-url", fake.url], catch_exceptions=False)


def _together(fake: FakeTogether, dataset: Path, out: Path, *extra: str):
    return _invoke(fake, "together", "--dataset", str(dataset), "--model", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
                   "--suffix", "repo-agent", "--epochs", "1", "--batch-size", "max", "--learning-rate", "1e-5", "--lora",
                   "--poll-interval", "0.01", "--out", str(out), *extra)


def _record(out: Path) -> dict:
    return json.loads((out / "together_job.json").read_text(encoding="utf-8"))


def _posts(fake: FakeTogether, path: str) -> list:
    return [r for r in fake.state.requests if r.method == "POST" and r.path == path]


def test_successful_job_is_uploaded_created_watched_and_recorded(fake, tmp_path):
    dataset, out = _sft_file(tmp_path), tmp_path / "run"
    result = _together(fake, dataset, out, "--watch")

    assert result.exit_code == 0, result.output
    # The SDK's exact sequence: upload redirect, PUT, preprocess, then limits and price before create.
    assert fake.state.paths()[:6] == ["/v1/files", f"/upload/{next(iter(fake.state.files))}",
                                      f"/v1/files/{next(iter(fake.state.files))}/preprocess",
                                      "/v1/fine-tunes/models/limits", "/v1/fine-tunes/estimate-price", "/v1/fine-tunes"]
    file_id = next(iter(fake.state.files))
    assert fake.state.uploads[file_id] == dataset.read_bytes()
    form = _posts(fake, "/v1/files")[0].body
    assert form["purpose"] == "fine-tune" and form["file_name"] == "sft.jsonl" and form["file_type"] == "jsonl"

    created = _posts(fake, "/v1/fine-tunes")[0].body
    assert created["model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    assert created["training_file"] == file_id and created["suffix"] == "repo-agent"
    assert created["n_epochs"] == 1 and created["batch_size"] == "max" and created["learning_rate"] == 1e-5
    assert created["training_type"]["type"] == "Lora" and created["training_method"]["method"] == "sft"

    (job_id, job), = fake.state.jobs.items()
    record = _record(out)
    assert record["job_id"] == job_id and record["file_id"] == file_id
    assert record["status"] == "completed" and record["failure"] is None
    assert record["output_model"] == job["model_output_name"] and record["output_model"] in result.output
    assert record["base_model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    assert [h["status"] for h in record["status_history"]] == ["pending", "queued", "running", "completed"]
    assert record["events"][-1]["type"] == "job_complete"
    assert "Step 2/2" in result.output  # events were shown while watching

    # The key went to the server and nowhere else.
    assert {r.authorization for r in fake.state.requests if not r.path.startswith("/upload/")} == {f"Bearer {SECRET}"}
    assert SECRET not in result.output
    assert all(SECRET not in p.read_text() for p in out.rglob("*") if p.is_file())


def test_trained_task_ids_come_from_the_provenance_sidecar(fake, tmp_path):
    dataset = _sft_file(tmp_path)
    sidecar = tmp_path / "sft.meta.jsonl"
    sidecar.write_text("".join(json.dumps({"task_id": t, "step_index": i}) + "\n"
                               for i, t in enumerate(["bundled/gcd", "bundled/gcd", "bundled/bitcount"])))

    result = _together(fake, dataset, tmp_path / "run")

    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "run" / "trained_tasks.json").read_text())
    assert written["task_ids"] == ["bundled/bitcount", "bundled/gcd"]
    assert _record(tmp_path / "run")["trained_tasks_file"] == str(tmp_path / "run" / "trained_tasks.json")

    sidecar.write_text(json.dumps({"task_id": "bundled/gcd"}) + "\n")  # stale: 1 line for 3 rows
    stale = _together(fake, dataset, tmp_path / "run2")
    assert stale.exit_code == 0, stale.output
    assert not (tmp_path / "run2" / "trained_tasks.json").exists() and "cannot flag leakage" in stale.output


def test_real_sft_extract_output_goes_through_unchanged(fake, tmp_path, monkeypatch):
    """The whole hosted path from teacher traces: oracle rollouts -> sft-extract -> finetune together,
    then `eval --model <the fine-tune>` knows which tasks it was trained on."""
    monkeypatch.setenv("REPO_AGENT_CACHE", str(tmp_path / "cache"))
    runner, traces = CliRunner(), tmp_path / "teacher"
    for task in ("gcd", "bitcount"):
        rolled = runner.invoke(app, ["run", "--suite", str(ROOT / "eval/suites/bundled_suite.json"), "--task", task, "--llm-provider", "oracle",
                                     "--trace-dir", str(traces)])
        assert rolled.exit_code == 0, rolled.output
    dataset = tmp_path / "sft.jsonl"
    extracted = runner.invoke(app, ["sft-extract", "--trace-dir", str(traces), "--out", str(dataset), "--allow-held-out"])
    assert extracted.exit_code == 0, extracted.output

    result = _together(fake, dataset, tmp_path / "run", "--watch")

    assert result.exit_code == 0, result.output
    assert fake.state.uploads[_record(tmp_path / "run")["file_id"]] == dataset.read_bytes()
    step_estimate = int(re.search(r"billed-token estimate: ~([\d,]+) tokens per epoch", " ".join(result.output.split())).group(1).replace(",", ""))
    # episode rows carry the same trained turns, go up as they are, and cost fewer billed tokens
    episodes = tmp_path / "episodes.jsonl"
    assert runner.invoke(app, ["sft-extract", "--trace-dir", str(traces), "--out", str(episodes), "--rows", "episode",
                               "--allow-held-out"]).exit_code == 0
    sent = _together(fake, episodes, tmp_path / "run_episodes")
    assert sent.exit_code == 0, sent.output
    assert fake.state.uploads[_record(tmp_path / "run_episodes")["file_id"]] == episodes.read_bytes()
    said = " ".join(sent.output.split())
    estimate = re.search(r"billed-token estimate: ~([\d,]+) tokens per epoch .*?(\d+) rows, (\d+) trained turns", said)
    assert estimate, said
    assert int(estimate.group(1).replace(",", "")) < step_estimate and estimate.group(2) == "2"
    assert estimate.group(3) == str(len(dataset.read_text().splitlines()))
    trained = json.loads((tmp_path / "run" / "trained_tasks.json").read_text())["task_ids"]
    assert trained == ["bundled/bitcount", "bundled/gcd"]
    model = _record(tmp_path / "run")["output_model"]
    refused = runner.invoke(app, ["eval", "--suite", str(ROOT / "eval/suites/bundled_test_suite.json"), "--trace-dir",
                                  str(tmp_path / "eval"), "--llm-provider", "together", "--model", model, "--base-url", f"{fake.url}/v1"])
    assert refused.exit_code == 2 and "trained on 1 task(s) of this suite (bundled/gcd" in refused.output
    assert f"registered fine-tune {model}" in refused.output and not (tmp_path / "eval").exists()


def test_rejected_file_is_refused_with_reasons_and_nothing_is_uploaded(fake, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good_line = _sft_file(tmp_path).read_text().splitlines()[0]
    bad.write_text(good_line + "\n{\"messages\": [truncated\n", encoding="utf-8")
    out = tmp_path / "run"

    result = _together(fake, bad, out, "--watch")

    assert result.exit_code == 2, result.output
    assert "refused" in result.output and "line 2" in result.output
    assert fake.state.requests == []
    assert not (out / "together_job.json").exists()


def test_project_format_check_refuses_what_the_sdk_check_lets_through(fake, tmp_path):
    pytest.importorskip("repo_agent.data.check")
    row = _sft_row("Fix gcd.", [ToolCall("list_files", {"rel_dir": "."})])
    row["messages"].append({"role": "user", "content": "a trailing user turn: nothing to learn"})
    bad = tmp_path / "trailing_user.jsonl"
    bad.write_text(json.dumps(row) + "\n", encoding="utf-8")

    result = _together(fake, bad, tmp_path / "run")

    assert result.exit_code == 2, result.output
    assert "repo_agent.data.check" in result.output
    assert fake.state.requests == []


def test_failed_job_makes_watch_exit_nonzero_and_records_the_failure(fake, tmp_path):
    fake.state.job_plan = FAILURE_PLAN
    out = tmp_path / "run"

    result = _together(fake, _sft_file(tmp_path), out, "--watch")

    assert result.exit_code == 1, result.output
    record = _record(out)
    assert record["status"] == "error"
    assert record["failure"] == fake.state.failure_message
    assert fake.state.failure_message in " ".join(result.output.split())

    again = _together(fake, _sft_file(tmp_path), out, "--watch")  # a finished run is a no-op
    assert again.exit_code == 1 and "pick another --out" in again.output
    assert len(_posts(fake, "/v1/fine-tunes")) == 1 and len(_posts(fake, "/v1/files")) == 1


def test_without_watch_the_job_is_recorded_and_a_rerun_resumes_it_without_paying_twice(fake, tmp_path):
    dataset, out = _sft_file(tmp_path), tmp_path / "run"
    first = _together(fake, dataset, out)
    assert first.exit_code == 0, first.output
    assert _record(out)["status"] == "pending" and _record(out)["job_id"] in fake.state.jobs

    again = _together(fake, dataset, out, "--watch")

    assert again.exit_code == 0, again.output
    assert "resuming" in again.output
    assert len(_posts(fake, "/v1/files")) == 1 and len(_posts(fake, "/v1/fine-tunes")) == 1
    assert _record(out)["status"] == "completed"

    changed = _together(fake, dataset, out, "--epochs", "3")
    assert changed.exit_code == 2 and "epochs" in changed.output
    assert len(_posts(fake, "/v1/fine-tunes")) == 1


def test_a_run_that_crashed_after_the_upload_resumes_with_the_same_file(fake, tmp_path):
    dataset, out = _sft_file(tmp_path), tmp_path / "run"
    fake.state.fail_next["POST /v1/fine-tunes"] = 1

    crashed = _together(fake, dataset, out, "--max-retries", "0")

    assert crashed.exit_code == 1, crashed.output
    assert "InternalServerError" in crashed.output
    assert SECRET not in crashed.output and "[redacted]" in crashed.output  # the echoed key is redacted
    assert _record(out)["file_id"] and _record(out)["job_id"] is None

    resumed = _together(fake, dataset, out, "--max-retries", "0", "--watch")

    assert resumed.exit_code == 0, resumed.output
    assert len(_posts(fake, "/v1/files")) == 1
    assert _posts(fake, "/v1/fine-tunes")[-1].body["training_file"] == _record(out)["file_id"]
    assert _record(out)["status"] == "completed"


def test_status_prints_status_and_events_by_job_id_and_by_run_folder(fake, tmp_path):
    out = tmp_path / "run"
    assert _together(fake, _sft_file(tmp_path), out).exit_code == 0
    job_id = _record(out)["job_id"]

    by_id = _invoke(fake, "status", job_id)
    assert by_id.exit_code == 0, by_id.output
    assert "queued" in by_id.output and "Job is queued" in by_id.output and "Fine-tune request created" in by_id.output

    by_folder = _invoke(fake, "status", str(out), "--watch", "--poll-interval", "0.01")
    assert by_folder.exit_code == 0, by_folder.output
    assert _record(out)["status"] == "completed"

    unknown = _invoke(fake, "status", "ft-does-not-exist")
    assert unknown.exit_code == 1 and "NotFound" in unknown.output


def test_ctrl_c_stops_watching_but_not_the_job(fake, tmp_path):
    import os
    import signal
    import time

    fake.state.job_plan = ("queued",) + ("running",) * 100_000  # never ends while we watch
    out = tmp_path / "run"
    assert _together(fake, _sft_file(tmp_path), out).exit_code == 0
    import threading

    watcher = subprocess.Popen([str(ROOT / ".venv" / "bin" / "repo-agent"), "finetune", "status", str(out), "--watch",
                                "--poll-interval", "0.05", "--base-url", fake.url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
                               # as in a terminal: earlier tests' libraries may leave SIGINT ignored in this
                               # process, and an ignored SIGINT is inherited (Python then never raises it)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)  # never let the pipe fill
    reader.start()
    # Interrupt only once the watcher is inside its polling loop (it has printed and recorded the job
    # as running): a condition, not a clock. The deadline only stops a broken watcher from hanging the
    # suite; reaching it fails the test instead of interrupting the watcher at some other point.
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while not lines or _record(out)["status"] != "running":
        if watcher.poll() is not None or time.monotonic() > deadline:
            watcher.kill()
            reader.join(timeout=10)
            pytest.fail(f"the watcher never reached its polling loop (exit {watcher.returncode}):\n{''.join(lines)}")
        time.sleep(0.05)
    watcher.send_signal(signal.SIGINT)
    watcher.wait(timeout=WAIT_DEADLINE_S)
    reader.join(timeout=WAIT_DEADLINE_S)
    output = "".join(lines)

    assert watcher.returncode == 130, output
    assert "keeps running" in output
    assert _record(out)["status"] == "running"
    assert not [r for r in fake.state.requests if "cancel" in r.path]


def test_dpo_job_sends_the_method_and_beta(fake, tmp_path):
    out = tmp_path / "run"
    result = _invoke(fake, "together", "--dataset", str(_pairs_file(tmp_path)), "--model", "meta-llama/X",
                     "--training-method", "dpo", "--dpo-beta", "0.2", "--out", str(out))

    assert result.exit_code == 0, result.output
    method = _posts(fake, "/v1/fine-tunes")[0].body["training_method"]
    assert method["method"] == "dpo" and method["dpo_beta"] == 0.2
    assert _record(out)["request"]["training_method"] == "dpo"


def test_continuing_from_a_checkpoint_sends_it_instead_of_a_model(fake, tmp_path):
    result = _invoke(fake, "together", "--dataset", str(_sft_file(tmp_path)), "--model", "meta-llama/X",
                     "--from-checkpoint", "ft-0001-old:10", "--out", str(tmp_path / "run"))

    assert result.exit_code == 0, result.output
    created = _posts(fake, "/v1/fine-tunes")[0].body
    assert created["from_checkpoint"] == "ft-0001-old:10" and "model" not in created


@pytest.mark.parametrize("flags, message", [
    (["--training-method", "sft", "--dpo-beta", "0.1"], "--dpo-beta only applies"),
    (["--batch-size", "huge"], "--batch-size must be"),
    (["--training-method", "ppo"], "--training-method must be"),
])
def test_bad_flags_are_refused_before_any_request(fake, tmp_path, flags, message):
    result = _together(fake, _sft_file(tmp_path), tmp_path / "run", *flags)

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert fake.state.requests == []


def test_batch_size_above_the_model_limit_is_refused_before_the_job_is_created(fake, tmp_path):
    result = _together(fake, _sft_file(tmp_path), tmp_path / "run", "--batch-size", "64")

    assert result.exit_code == 2, result.output
    assert "maximum allowed value of 16" in " ".join(result.output.split())
    assert _posts(fake, "/v1/fine-tunes") == []


def test_file_refused_by_the_server_after_upload_creates_no_job(fake, tmp_path):
    fake.state.file_processing_status = "INVALID_FORMAT"
    out = tmp_path / "run"

    result = _together(fake, _sft_file(tmp_path), out, "--watch")

    assert result.exit_code == 2, result.output
    assert "server-side validation failed" in result.output
    assert _posts(fake, "/v1/fine-tunes") == []
    assert _record(out)["file_status"] == "INVALID_FORMAT" and _record(out)["job_id"] is None

    fake.state.file_processing_status = "COMPLETED"  # a refused upload is never reused: the rerun uploads again
    again = _together(fake, _sft_file(tmp_path), out)
    assert again.exit_code == 0, again.output
    assert len(_posts(fake, "/v1/files")) == 2
    assert _posts(fake, "/v1/fine-tunes")[0].body["training_file"] == _record(out)["file_id"] != "file-0001-fake"


def test_user_script_is_a_thin_shell_over_the_same_command(fake, tmp_path):
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sft_finetune_quick.py"), "--dataset", str(_sft_file(tmp_path)),
         "--model", "meta-llama/X", "--suffix", "quick", "--epochs", "1", "--batch-size", "max",
         "--learning-rate", "1e-5", "--lora", "--watch", "--poll-interval", "0.01", "--out", str(out), "--base-url", fake.url],
        capture_output=True, text=True, timeout=WAIT_DEADLINE_S, cwd=tmp_path,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    (job_id, job), = fake.state.jobs.items()
    assert _record(out)["output_model"] == job["model_output_name"] and job["suffix"] == "quick"
    assert SECRET not in completed.stdout + completed.stderr

import os
import socket

import pytest

from repo_agent.tools import run_tool


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def quicksort(xs):\n    return xs\n")
    (root / "pkg" / "b.py").write_text("x = 1\n" * 50)
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "secret.txt").write_text("outside")
    return root


def ok(root, name, **args):
    outcome = run_tool(root, name, args)
    good, text = outcome.ok, outcome.text
    assert good, text
    return text


def refused(root, name, **args):
    outcome = run_tool(root, name, args)
    good, text = outcome.ok, outcome.text
    assert not good
    assert text.startswith("ERROR: ")
    return text


def test_list_read_grep_write(ws):
    assert ok(ws, "list_files", rel_dir=".").splitlines() == ["blob.bin", "pkg/a.py", "pkg/b.py"]
    assert ok(ws, "read_file", rel_path="pkg/a.py").startswith("def quicksort")
    assert ok(ws, "grep", pattern=r"def \w+sort") == "pkg/a.py:1: def quicksort(xs):"
    assert ok(ws, "write_file", rel_path="new/c.py", content="y = 2\n") == "wrote 6 chars to new/c.py"
    assert (ws / "new" / "c.py").read_text() == "y = 2\n"


def test_outputs_are_capped_with_explicit_markers(ws):
    assert ok(ws, "list_files", max_files=1).endswith("... [truncated: showing 1 of 3 files]")
    text = ok(ws, "read_file", rel_path="pkg/b.py", max_chars=10)
    assert text == "x = 1\nx = \n... [truncated: showing 10 of 300 chars]"
    grep = ok(ws, "grep", pattern="x = 1", max_matches=3)
    assert grep.splitlines()[-1] == "... [truncated: showing 3 of 50 matches]"


def test_binary_files_are_described_not_dumped(ws):
    assert ok(ws, "read_file", rel_path="blob.bin") == "(binary file, 300 bytes, not shown)"
    assert ok(ws, "grep", pattern="\x01") == "(no matches)"


@pytest.mark.parametrize("path", ["../secret.txt", "pkg/../../secret.txt", "/etc/passwd", "~/x", "a\x00b", "C:\\x"])
def test_paths_outside_the_workspace_are_refused(ws, path):
    for name, args in [("read_file", {"rel_path": path}), ("write_file", {"rel_path": path, "content": "x"}),
                       ("list_files", {"rel_dir": path}), ("grep", {"pattern": "x", "rel_dir": path})]:
        refused(ws, name, **args)
    assert (ws.parent / "secret.txt").read_text() == "outside"


def test_symlinks_leading_out_are_refused(ws):
    os.symlink(ws.parent / "secret.txt", ws / "link.txt")
    os.symlink(ws.parent, ws / "up")
    assert "outside the workspace" in refused(ws, "read_file", rel_path="link.txt")
    assert "outside the workspace" in refused(ws, "write_file", rel_path="link.txt", content="pwned")
    assert "outside the workspace" in refused(ws, "write_file", rel_path="up/evil.py", content="x")
    assert "outside the workspace" in refused(ws, "list_files", rel_dir="up")
    assert (ws.parent / "secret.txt").read_text() == "outside"
    assert not (ws.parent / "evil.py").exists()
    # the listing shows the links but never walks out through them
    assert "up/secret.txt" not in ok(ws, "list_files")


def test_device_files_fifos_and_sockets_are_refused(ws):
    os.mkfifo(ws / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "sock"))
    try:
        assert "not a regular file" in refused(ws, "read_file", rel_path="pipe")  # would block forever if opened
        assert "not a regular file" in refused(ws, "read_file", rel_path="sock")
    finally:
        sock.close()
    os.symlink("/dev/zero", ws / "zero")
    refused(ws, "read_file", rel_path="zero")


def test_tool_errors_are_messages(ws):
    assert "no such file" in refused(ws, "read_file", rel_path="nope.py")
    assert "directory" in refused(ws, "read_file", rel_path="pkg")
    assert "invalid regular expression" in refused(ws, "grep", pattern="(")


def test_a_runaway_pattern_is_a_tool_error_not_a_stuck_worker(tmp_path):
    import time

    from repo_agent.tools import GREP_TIME_LIMIT_S, run_tool

    (tmp_path / "words.txt").write_text("\n".join("a" * 60 + "b" for _ in range(10)))
    started = time.monotonic()
    outcome = run_tool(tmp_path, "grep", {"pattern": r"(a|aa)+$"})  # exponential backtracking: years with `re`
    assert time.monotonic() - started < GREP_TIME_LIMIT_S + 20  # the timeout is checked periodically
    assert not outcome.ok and "took longer than" in outcome.text
    assert run_tool(tmp_path, "grep", {"pattern": r"a{60}b$"}).text.count("words.txt:") == 10

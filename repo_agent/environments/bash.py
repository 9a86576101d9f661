"""The `bash` tool set: one shell command per step in the workspace, inside the sandbox, and `submit`.

A command can change anything in its workspace, so after each one the environment looks at what
changed: changes the task does not allow (tests, test configuration, new files where none may be
created) are undone at once and reported to the model, exactly like a refused `write_file`; the sealed
verdict would ignore them anyway. Commands run with no network, the real home folders and the suite
(which holds the reference fixes) hidden, memory and file-size limits, a pids cgroup as root, and a
timeout; their output is capped.

With bubblewrap the sandbox is made once per episode, when the environment opens (with the workspace):
a small command server (_child/bash_server.py) runs inside it and keeps a fresh shell waiting for the
next command, so a command costs a pipe round trip instead of a sandbox, a cgroup, a process set-up and
a shell start. Each command keeps its own timeout, output cap and
kill of everything it started (the server kills every process it left in the sandbox's pid namespace).
A server that dies or stops answering ends that command with a tool error, and the next command gets a
fresh server. Without a sandbox (`--sandbox none`) each command runs on its own, as before.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import ToolCall
from ..sandbox import SandboxUnavailable, interpreter_folders, kill_group, new_pids_cgroup, resolve_sandbox
from ..suites.rules import REFUSED_PROTECTED
from ..suites.task import Suite, TaskSpec
from ..testrun import MEMORY_LIMIT_BYTES, OUTPUT_LIMIT_BYTES, scrubbed_env
from ..tools import ToolOutcome
from ..toolsets import BASH_OUTPUT_CHARS, BASH_TIMEOUT_S, ToolSet
from ..workspace import TaskWorkspace, file_states, hidden_folders
from .files import WorkspaceEnvironment

# git in a workspace that holds a repository (SWE-bench tasks: one fresh commit of the base): the sandbox
# user does not own the files, and `git status`/`git diff` would otherwise rewrite .git/index (protected,
# so undone and reported after every such command).
GIT_ENV = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*",
           "GIT_OPTIONAL_LOCKS": "0", "GIT_CONFIG_NOSYSTEM": "1"}
READ_LIMIT_BYTES = 4 * 1024**2  # a command printing more than this is killed: its output is capped anyway
_LIMITS = "ulimit -v {mem_kb} 2>/dev/null; ulimit -f {file_blocks} 2>/dev/null; "
_LAUNCH = _LIMITS + 'eval "$REPO_AGENT_COMMAND"'
# the command server's spare shell: limits first, then the command from descriptor 3 (bash_server.py)
_SPARE_LAUNCH = _LIMITS + 'IFS= read -r -d "" REPO_AGENT_COMMAND <&3; exec 3<&-; eval "$REPO_AGENT_COMMAND"'
SERVER = Path(__file__).resolve().parents[1] / "_child" / "bash_server.py"
SERVER_GRACE_S = 10  # beyond a command's own timeout, before its server counts as hung


class _Server:
    """One episode's command server: the sandboxed process and its pids cgroup."""

    def __init__(self, argv: list[str], env: dict[str, str], root: Path):
        self.cgroup = new_pids_cgroup()
        if self.cgroup is not None:
            argv = self.cgroup.wrap(argv)
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.buffer = b""
        ready = self.receive(30)
        if ready is None or "ready" not in ready:
            self.close()
            raise OSError("the command server did not start")

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next reply, or None when the server died or stayed silent past `timeout`."""
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            block = os.read(fd, 1 << 20)
            if not block:
                return None
            self.buffer += block
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None

    def ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self.receive(request["timeout"] + SERVER_GRACE_S)

    def close(self) -> None:
        kill_group(self.proc.pid)
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.close()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, AttributeError):
                pass


@dataclass
class BashEnvironment(WorkspaceEnvironment):
    _server: _Server | None = field(default=None, repr=False)
    @classmethod
    def open(cls, suite: Suite, task: TaskSpec, toolset: ToolSet, sandbox: str) -> "BashEnvironment":
        box = resolve_sandbox(sandbox)
        if not box.isolated and sandbox != "none":
            raise SandboxUnavailable(f"the bash tool set runs the model's commands and needs bubblewrap ({box.note}); "
                                     "--sandbox none runs them unisolated, if you accept that")
        env = cls(TaskWorkspace.create(suite, task, box), toolset)
        if box.isolated:  # the sandbox and its server are part of the episode's set-up, like the workspace
            try:
                env._start_server()
            except OSError:
                pass  # the first command tries again and reports what went wrong
        return env

    def execute(self, action: ToolCall) -> ToolOutcome:
        if action.name != "bash":
            return ToolOutcome(False, f"ERROR: {action.name} is not a command")
        if "\x00" in action.args["command"]:
            return ToolOutcome(False, "ERROR: the command contains a NUL character, which no shell command can hold")
        before = file_states(self.workspace.root)
        output, code, killed = self._run(action.args["command"])
        after = file_states(self.workspace.root)
        changed = tuple(sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)))
        undone = self.workspace.undo_ignored()
        text = output if len(output) <= BASH_OUTPUT_CHARS else (
            output[:BASH_OUTPUT_CHARS] + f"\n... [truncated: showing {BASH_OUTPUT_CHARS} of {len(output)}+ chars]")
        text = (text.rstrip("\n") + "\n" if text.strip() else "(no output)\n") + (killed or f"[exit code {code}]")
        refused = None
        if undone:
            kinds = {kind for _, kind in undone}
            refused = REFUSED_PROTECTED if REFUSED_PROTECTED in kinds else kinds.pop()
            text += ("\n[undone] tests and test configuration are read-only in this task, and new files are not allowed "
                     f"here: {', '.join(path for path, _ in undone)} restored")
        return ToolOutcome(not killed, text, refused=refused, refused_paths=tuple(p for p, _ in undone),
                           changed=tuple(p for p in changed if p not in {u for u, _ in undone}))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        super().close()

    def _run(self, command: str) -> tuple[str, int | None, str | None]:
        """(output, exit code, why it was killed or None)."""
        if not self.sandbox.isolated:
            return self._run_alone(command)
        if self._server is None:
            self._start_server()
        assert self._server is not None
        reply = self._server.ask({"command": command, "timeout": BASH_TIMEOUT_S, "output_limit": READ_LIMIT_BYTES})
        if reply is None:
            self._server.close()
            self._server = None
            return "", None, "[killed: the command's shell server died or stopped answering; the next command gets a fresh one]"
        killed = {None: None, "timeout": f"[killed: the command ran longer than {BASH_TIMEOUT_S} s]",
                  "output": f"[killed: the command printed more than {READ_LIMIT_BYTES // 1024**2} MB]"}[reply["killed"]]
        return reply["output"], reply["exit"], killed

    def _start_server(self) -> None:
        env, argv = self._command_env(""), self._argv([sys.executable, "-I", str(SERVER)])
        env["REPO_AGENT_LAUNCH"] = _SPARE_LAUNCH.format(mem_kb=MEMORY_LIMIT_BYTES // 1024, file_blocks=OUTPUT_LIMIT_BYTES // 1024)
        del env["REPO_AGENT_COMMAND"]
        self._server = _Server(argv, env, self.workspace.root)

    def _command_env(self, command: str) -> dict[str, str]:
        # The task's test interpreter first on PATH (a SWE-bench task's venv has the repository's
        # dependencies), so `python -m pytest` in a command runs like the driver's test runs.
        python = self.workspace.task.test.python or sys.executable
        env = scrubbed_env({"REPO_AGENT_COMMAND": command,
                            "PATH": os.pathsep.join(dict.fromkeys([str(Path(python).parent), str(Path(sys.executable).parent),
                                                                   os.environ.get("PATH", "")])),
                            **GIT_ENV})
        if self.sandbox.isolated:
            env["HOME"] = "/tmp/home"
        return env

    def _argv(self, argv: list[str]) -> list[str]:
        python = self.workspace.task.test.python or sys.executable
        return self.sandbox.wrap(argv, workdir=self.workspace.root, hide=hidden_folders(self.workspace.suite),
                                 visible=[*interpreter_folders(python), *interpreter_folders(sys.executable), SERVER.parent])

    def _run_alone(self, command: str) -> tuple[str, int | None, str | None]:
        """One command in a process tree of its own (no sandbox to keep a server in)."""
        root = self.workspace.root
        launch = _LAUNCH.format(mem_kb=MEMORY_LIMIT_BYTES // 1024, file_blocks=OUTPUT_LIMIT_BYTES // 1024)
        env, argv = self._command_env(command), self._argv(["bash", "-c", launch])
        cgroup = new_pids_cgroup()
        if cgroup is not None:
            argv = cgroup.wrap(argv)
        proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        chunks: list[bytes] = []
        overflow = threading.Event()

        def drain() -> None:
            size = 0
            assert proc.stdout is not None
            for block in iter(lambda: proc.stdout.read(65536), b""):
                if size < READ_LIMIT_BYTES:
                    chunks.append(block)
                size += len(block)
                if size > READ_LIMIT_BYTES:
                    overflow.set()
                    kill_group(proc.pid)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        killed = None
        try:
            # The output closing is the command ending (the sandbox's pid namespace ends with it); waiting
            # on it wakes at once, where Popen.wait(timeout) polls with sleeps of up to 50 ms.
            reader.join(timeout=BASH_TIMEOUT_S)
            if reader.is_alive():
                killed = f"[killed: the command ran longer than {BASH_TIMEOUT_S} s]"
            else:
                proc.wait(timeout=BASH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            killed = f"[killed: the command ran longer than {BASH_TIMEOUT_S} s]"
        finally:
            kill_group(proc.pid)
            proc.wait()  # reaped first: the cgroup cannot be removed while it holds our child
            if cgroup is not None:
                cgroup.close()
            reader.join(timeout=10)
        if overflow.is_set():
            killed = f"[killed: the command printed more than {READ_LIMIT_BYTES // 1024**2} MB]"
        return b"".join(chunks).decode("utf-8", errors="replace"), proc.returncode, killed

"""The command server of the `bash` tool set: one per episode, inside the episode's sandbox (Python >= 3.8).

The sandbox (bubblewrap: read-only system, the workspace writable, a private /tmp, no network, its own
pid namespace) is set up once per episode instead of once per command; each command still gets a fresh
shell. A request is one JSON line on stdin, {"command", "timeout", "output_limit"}; the reply is one JSON
line on stdout, {"output", "exit", "killed"}. The server keeps one spare shell waiting: `bash -c LAUNCH`
(from REPO_AGENT_LAUNCH: the ulimits, then it reads the command from descriptor 3 up to a NUL byte and
evals it), started in a session of its own right after the previous command ended and its leftovers
were killed, so nothing of that command is in it; a command then costs a pipe write instead of a shell
start. The server reads the command's output up to the limit, kills it at the timeout or at the output
limit, and afterwards kills every process left in the sandbox's pid namespace but itself and the
namespace's init: nothing a command started outlives it.
"""

import json
import os
import select
import signal
import sys
import time


def _kill_leftovers():
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            try:
                os.kill(int(name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Spare:
    """A fresh shell waiting for its command on descriptor 3."""

    def __init__(self, launch):
        command_r, self.command_w = os.pipe()
        output_r, output_w = os.pipe()
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, output_w, 1),
                   (os.POSIX_SPAWN_DUP2, output_w, 2), (os.POSIX_SPAWN_DUP2, command_r, 3)]
        try:
            self.pid = os.posix_spawnp("bash", ["bash", "-c", launch], os.environ, file_actions=actions, setsid=True)
        finally:
            os.close(command_r)
            os.close(output_w)
        self.output = output_r

    def start(self, command):
        data = command.encode("utf-8", errors="surrogateescape") + b"\0"
        try:
            while data:
                data = data[os.write(self.command_w, data):]
        except BrokenPipeError:
            pass  # the shell died waiting: its exit status says so
        os.close(self.command_w)


def run(request, spare):
    limit, deadline = request["output_limit"], time.monotonic() + request["timeout"]
    spare.start(request["command"])
    chunks, size, killed = [], 0, None
    fd = spare.output
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            killed = "timeout"
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        block = os.read(fd, 65536)
        if not block:
            break  # the output closed: the command (and whatever kept it open) ended
        if size < limit:
            chunks.append(block)
        size += len(block)
        if size > limit:
            killed = "output"
            break
    try:
        os.killpg(spare.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(spare.pid, 0)
    os.close(fd)
    _kill_leftovers()
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    return {"output": b"".join(chunks).decode("utf-8", errors="replace"), "exit": code, "killed": killed}


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    launch = os.environ.pop("REPO_AGENT_LAUNCH")  # not in the commands' environment
    out = sys.stdout
    spare = Spare(launch)
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run(json.loads(line), spare)
        out.write(json.dumps(reply) + "\n")
        out.flush()
        spare = Spare(launch)  # while the driver reads the reply and the model thinks


if __name__ == "__main__":
    main()

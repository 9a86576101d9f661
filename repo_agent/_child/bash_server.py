"""The command server of the `bash` tool set: one per episode, inside the episode's sandbox (Python >= 3.6).

The sandbox (bubblewrap: read-only system, the workspace writable, a private /tmp, no network, its own
pid namespace) is set up once per episode instead of once per command; each command still starts a fresh
shell. A request is one JSON line on stdin, {"command", "timeout", "output_limit", "launch"}; the reply
is one JSON line on stdout, {"output", "exit", "killed"}. Per command the server starts
`bash -c LAUNCH` (the launch line sets the ulimits, then evals the command) in a session of its own,
reads its output up to the limit, kills it at the timeout or at the output limit, and afterwards kills
every process left in the sandbox's pid namespace but itself and the namespace's init: nothing a
command started outlives it.
"""

import json
import os
import select
import signal
import subprocess
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


def run(request):
    env = dict(os.environ, REPO_AGENT_COMMAND=request["command"])
    proc = subprocess.Popen(["bash", "-c", request["launch"]], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    limit, deadline = request["output_limit"], time.monotonic() + request["timeout"]
    chunks, size, killed = [], 0, None
    fd = proc.stdout.fileno()
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
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    code = proc.wait()
    proc.stdout.close()
    _kill_leftovers()
    return {"output": b"".join(chunks).decode("utf-8", errors="replace"), "exit": code, "killed": killed}


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = run(json.loads(line))
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()

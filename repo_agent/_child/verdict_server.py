"""A warm verdict worker's server: pays the interpreter start and pytest's imports once, then forks a
fresh child per test run (Linux, Python >= 3.9; runs inside the worker's bubblewrap sandbox).

Started by the driver (repo_agent/warm.py) as `python -c "...; verdict_server.serve(FD)"` with FD one
end of a unix socket. Per request (a JSON header with the run's config, args, environment, the sealed
copy's folder and its read-only files, plus three file descriptors: result pipe, key pipe, output
file) it forks:

  run       unshares a user, mount, pid, ipc, uts and network namespace of its own; mounts a fresh
            tmpfs on /tmp (and /dev/shm), binds the run's sealed folder back at its own path (the only
            part of the driver's temp folder the run sees), binds the read-only files read-only;
  init      pid 1 of the run's pid namespace: when it exits, the kernel kills everything the run started;
            it dies with `run` (PDEATHSIG), which the server kills at the wall-clock backstop;
  test      drops every capability (so the read-only binds cannot be undone), becomes dumpable again,
            takes the run's environment, folder and descriptors, and calls repo_agent_bootstrap.run:
            the same limits, result channel, guards and pytest as a cold run, imported after the fork.

The server itself is not dumpable (a run cannot ptrace it or write its memory), has no pid a run can
name (the run's pid namespace does not contain it), and after each run checks that no process of the
run is left before it answers; anything else ends the worker (the driver then reruns the verdict cold).
"""

import atexit
import ctypes
import gc
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
STAGING = "/tmp/.repo-agent-host-tmp"  # where the worker sees the driver's temp folder (the server only)
HEADER = struct.Struct("!I")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "{}: {}".format(what, os.strerror(errno)))


def _mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), "mount " + target)


def _kept_flags(path):
    """The mount's own flags, which a remount must repeat (they are locked in a user namespace)."""
    found = os.statvfs(path).f_flag
    flags = found & (MS_NOSUID | MS_NODEV | 8 | 1024 | 2048)  # nosuid nodev noexec noatime nodiratime
    return flags | (1 << 21 if found & 4096 else 0)  # ST_RELATIME -> MS_RELATIME


def _drop_capabilities():
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _enter_namespaces(request):
    """In the `run` process: its own namespaces, /tmp, /dev/shm and read-only binds (see the docstring)."""
    uid, gid = os.getuid(), os.getgid()
    folder = request["folder"]  # the sealed copy's folder, a direct child of the driver's temp folder
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET),
           "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "{0} {0} 1".format(uid)), ("gid_map", "{0} {0} 1".format(gid))):
        with open("/proc/self/" + name, "w") as handle:
            handle.write(text)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # opened in the run's own mount namespace (a bind needs its source there), before /tmp is covered:
    # the run's folder, and the interpreter's folders that live under /tmp (bound back read-only)
    source = os.open(os.path.join(STAGING, os.path.basename(folder)), os.O_PATH | os.O_DIRECTORY)
    under_tmp = [(path, os.open(path, os.O_PATH)) for path in request.get("visible", [])
                 if path.startswith("/tmp/") and os.path.exists(path)]
    ids = "mode=0755,uid={},gid={}".format(uid, gid)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, ids)
    os.makedirs("/tmp/home")
    for path, fd in under_tmp:
        if os.path.isdir("/proc/self/fd/{}".format(fd)):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        _mount("/proc/self/fd/{}".format(fd), path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _kept_flags(path))
        os.close(fd)
    # the worker's /dev (bubblewrap's, shared by its runs) is read-only here: nothing a run leaves in it
    # reaches the next; device nodes still work, and /dev/shm is the run's own
    _mount(None, "/dev", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _kept_flags("/dev"))
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.makedirs(folder, exist_ok=True)  # under /tmp: in the fresh tmpfs; elsewhere: already there
    _mount("/proc/self/fd/{}".format(source), folder, None, MS_BIND | MS_REC)
    os.close(source)
    for path in request["readonly"]:
        _mount(path, path, None, MS_BIND)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _become_test(request, result_fd, key_fd, output_fd):
    """In the `test` process: nothing of the server's left but the imports; then the cold run's code."""
    _drop_capabilities()
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    keep = {0, 1, 2, result_fd, key_fd}
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(request["cwd"])
    env = dict(request["env"], REPO_AGENT_RESULT_FD=str(result_fd), REPO_AGENT_KEY_FD=str(key_fd))
    os.environ.clear()
    os.environ.update(env)
    pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[0:0] = ["", *pythonpath]  # where a fresh interpreter puts them: first, then PYTHONPATH
    sys.argv[:] = ["-c", *request["args"]]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    random.seed()  # a forked child would otherwise repeat the server's random sequence in every run
    import repo_agent_bootstrap

    repo_agent_bootstrap.run(request["config"], request["args"][1:])


def _test_process(request, fds):
    """The test process's exit status, ended as an interpreter ends: the status of SystemExit (its
    message printed), a traceback and 1 for any other exception, then the wait for non-daemon threads
    and the atexit functions (what Py_FinalizeEx does first)."""
    code = 0
    try:
        _become_test(request, *fds)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    return code & 0xFF


def _run_child(request, fds, status_w):
    """The `run` process (never returns)."""
    code = 70
    try:
        # a session and process group of the run's own (this process, init and the test), as bubblewrap
        # and the test share one in a cold run: kill(0, ...) reaches them, never the server
        os.setsid()
        _enter_namespaces(request)
        init = os.fork()
        if init == 0:
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            test = os.fork()
            if test == 0:
                os.close(status_w)
                os._exit(_test_process(request, fds))
            for fd in fds:
                os.close(fd)
            while True:  # pid 1 reaps every orphan of the run until the test process ends
                pid, status = os.wait()
                if pid == test:
                    break
            # as bubblewrap reports it (cold runs): the exit code, or 128 + the signal
            exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            os.write(status_w, json.dumps({"exit_code": exit_code}).encode())
            os._exit(0)
        for fd in fds:
            os.close(fd)
        os.close(status_w)
        os.waitpid(init, 0)
        code = 0
    except BaseException as exc:  # the set-up failed: say why, the driver reruns cold
        try:
            os.write(status_w, json.dumps({"setup_error": "{}: {}".format(type(exc).__name__, exc)}).encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _wait(pid, timeout):
    fd = os.pidfd_open(pid)
    try:
        ready = select.poll()
        ready.register(fd, select.POLLIN)
        return bool(ready.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def _leftovers(server_pid):
    """Processes in the worker's pid namespace besides bubblewrap's init and the server."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, server_pid):
            try:
                with open("/proc/{}/stat".format(name)) as handle:
                    state = handle.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                found.append(int(name))
    return found


def _handle(request, fds):
    status_r, status_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        _run_child(request, fds, status_w)
    for fd in (*fds, status_w):
        os.close(fd)
    started = time.monotonic()
    timed_out = not _wait(pid, request["wall_s"])
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, run_status = os.waitpid(pid, 0)
    chunks = []
    while True:  # every writer is gone: `run` exited, and `init` died with it or before it
        chunk = os.read(status_r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(status_r)
    status = json.loads(b"".join(chunks) or b"{}")
    if not timed_out and os.WIFSIGNALED(run_status) and "setup_error" not in status:
        # the run's process group was killed, `run` with it: what a cold run reports when the test
        # kills its own group (bubblewrap included) is the signal, as a negative exit code
        status = {"exit_code": -os.WTERMSIG(run_status)}
    deadline = time.monotonic() + 2.0
    left = _leftovers(os.getpid())
    while left and time.monotonic() < deadline:  # the kernel is still tearing the run's namespace down
        time.sleep(0.002)
        left = _leftovers(os.getpid())
    return dict(status, timed_out=timed_out, leftover_processes=len(left), wall_s=round(time.monotonic() - started, 4))


def _receive(sock):
    message, fds, _, _ = socket.recv_fds(sock, HEADER.size, 8)
    if not message:
        return None, []
    (length,) = HEADER.unpack(message)
    body = bytearray()
    while len(body) < length:
        chunk = sock.recv(min(1 << 20, length - len(body)))
        if not chunk:
            raise EOFError("the driver closed the socket mid-request")
        body += chunk
    return json.loads(bytes(body)), fds


def serve(fd):
    import repo_agent_bootstrap

    repo_agent_bootstrap.preload()
    gc.freeze()  # what the server imported is never garbage: each run's collections skip it
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl")
    os.chdir("/")
    sock = socket.socket(fileno=fd)
    sock.sendall(b'{"ready": true}\n')
    while True:
        request, fds = _receive(sock)
        if request is None:
            return
        if len(fds) != 3:
            sock.sendall(json.dumps({"setup_error": "expected 3 descriptors, got {}".format(len(fds))}).encode() + b"\n")
            for extra in fds:
                os.close(extra)
            continue
        reply = _handle(request, fds)
        sock.sendall(json.dumps(reply).encode() + b"\n")
        if reply.get("leftover_processes"):
            return  # the driver retires this worker

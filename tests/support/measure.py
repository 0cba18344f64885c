"""Run the `voiceivr` command in a child process and measure what it cost: exit code, output, peak memory.

Bad-input tests use this to show an input is refused with one clear line *and* without first eating memory.
The child gets an address-space limit, so a regression fails the test with a MemoryError instead of
exhausting a machine the test shares with others. Peak memory is the child's own ``ru_maxrss`` (from
``os.wait4`` on its pid, so other children of the test process do not count).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ADDRESS_SPACE_MB = 1200  # the CLI maps ~200 MB of address space at start; this leaves ~1 GB to misbehave in
BUDGET_MB = 200  # what refusing one bad input may cost over the same command's baseline


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float
    timed_out: bool

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("voiceivr: error:")]


def run_voiceivr(args: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                 address_space_mb: int = ADDRESS_SPACE_MB) -> Run:
    def limit() -> None:
        size = address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "voiceivr", *args], cwd=cwd, env=full_env, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, preexec_fn=limit)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen so
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   usage.ru_maxrss / 1024, timed_out.is_set())


def assert_refused(run: Run, baseline: Run, *expected: str, code: int = 1) -> None:
    """Refused as an operator should see it: exit ``code``, the expected words, no traceback, memory bounded."""
    assert not run.timed_out, f"timed out: {run.stderr[-2000:]}"
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.returncode == code, (run.returncode, run.output[-2000:])
    for words in expected:
        assert words in run.output, (words, run.output[-2000:])
    assert run.peak_mb - baseline.peak_mb < BUDGET_MB, (
        f"peak {run.peak_mb:.0f} MB against a baseline of {baseline.peak_mb:.0f} MB")

"""The fork server's warm-up (runs.preload) leaves a forked trial able to run torch's
parallel CPU kernels: a CPU op in the fork server starts OpenMP's threads, which a forked
child cannot use, and the trial hangs at its first parallel op (it did, once the FLOP
count of a small model moved to the CPU)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORKED_TRIAL = textwrap.dedent(
    """
    import os, sys
    import runs.preload  # what the fork server imports before it forks each trial
    import torch
    pid = os.fork()
    if pid == 0:
        torch.set_num_threads(2)
        torch.ones(1 << 22).add_(1).exp_().sum()  # large enough for parallel_for's threads
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.slow  # 4 s: torch imported in a fresh process
def test_a_trial_forked_after_the_warm_up_runs_parallel_cpu_kernels():
    process = subprocess.Popen([sys.executable, "-c", FORKED_TRIAL], cwd=ROOT, start_new_session=True)
    try:
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:  # hung: the forked child too, in the same session
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

"""Submit and wait for SLURM jobs in tests."""

import re
import subprocess
import time


def submit(args: list[str], env: dict, cwd: str | None = None) -> str:
    """Submit with ``sbatch`` (from ``cwd``: the job's SLURM_SUBMIT_DIR) and return the job id."""
    done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, timeout=60,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr
    return re.split(r"[;\s]", done.stdout.strip())[0]


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE"}


def job_state(job_id: str, env: dict) -> str:
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env)
    match = re.search(r"JobState=(\w+)", show.stdout)
    return match.group(1) if match else "UNKNOWN"


def wait(job_id: str, env: dict, timeout: float = 300) -> str:
    """Wait until the job reaches a terminal state (read from ``scontrol``, which keeps finished jobs for a while)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = job_state(job_id, env)
        if state in TERMINAL:
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], env=env)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s (last state {job_state(job_id, env)})")

"""Submit and wait for SLURM jobs in tests."""

import re
import subprocess
import time


def submit(args: list[str], env: dict) -> str:
    done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return re.split(r"[;\s]", done.stdout.strip())[0]


def wait(job_id: str, env: dict, timeout: float = 300) -> str:
    """Wait until the job leaves the queue; returns its final state from the jobcomp log or scontrol."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, env=env)
        if not queue.stdout.strip():
            break
        time.sleep(1)
    else:
        subprocess.run(["scancel", job_id], env=env)
        raise TimeoutError(f"job {job_id} still queued after {timeout} s")
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env)
    match = re.search(r"JobState=(\w+)", show.stdout)
    return match.group(1) if match else "UNKNOWN"

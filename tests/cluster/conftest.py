"""A real single-node SLURM cluster for the cluster tests (started once per session, stopped at the end)."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.slurm_utils import submit, wait

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster recipe needs root"
    for tool in ("slurmctld", "slurmd", "sbatch", "munged"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed (apt-get install slurm-wlm munge)"
    return None


def node_state(env: dict) -> str:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=env)
    return done.stdout.strip()


def warm_up(env: dict, folder: Path, attempts: int = 3) -> None:
    """Wait until the node is idle, then run ``srun true`` jobs until one completes.

    On a freshly started, loaded cluster the first job step was sometimes torn down at start-up ("srun: got
    SIGCONT ... CANCELLED"); a finished warm-up step means the tests' own jobs start on a settled node.
    """
    deadline = time.time() + 60
    while node_state(env) != "idle":
        if time.time() > deadline:
            raise RuntimeError(f"the local SLURM node is {node_state(env)!r}, not idle, 60 s after start-up")
        time.sleep(0.5)
    states = []
    for attempt in range(attempts):
        log = folder / f"warm-up-{attempt}.out"
        job = submit(["--ntasks=1", "--time=2", f"--output={log}", "--wrap", "srun true"], env)
        states.append(wait(job, env, timeout=120))
        if states[-1] == "COMPLETED":
            return
    raise RuntimeError(f"no warm-up job completed on the local SLURM cluster ({', '.join(states)}); see {folder}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Yields the environment (with SLURM_CONF) of a running local cluster; skips visibly when impossible."""
    reason = _missing()
    if reason:
        pytest.skip(f"SLURM tests skipped: {reason}")
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "scripts" / "slurm_local.sh"
    done = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"SLURM tests skipped: the local cluster did not start: {done.stderr.strip()[-300:]}")
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    try:
        warm_up(env, folder)
    except RuntimeError as error:
        subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True, timeout=60)
        pytest.fail(str(error))
    yield env
    subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True, timeout=60)

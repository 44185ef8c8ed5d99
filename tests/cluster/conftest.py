"""A real single-node SLURM cluster for the cluster tests (started once per session, stopped at the end)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster recipe needs root"
    for tool in ("slurmctld", "slurmd", "sbatch", "munged"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed (apt-get install slurm-wlm munge)"
    return None


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
    yield env
    subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True, timeout=60)

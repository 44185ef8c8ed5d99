#!/usr/bin/env bash
# Set up (idempotent) and run the project's main job. Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg
exec .venv/bin/python -m timeseries "$@"

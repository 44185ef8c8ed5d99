#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest, e.g. `scripts/test.sh -k primal`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q --durations=15 "$@"

#!/usr/bin/env bash
# The RL suite's main jobs (Decision Transformer, Chen et al., 2021; Primal.+DT, Chen et al., NeurIPS 2023, Table 4).
#
#   bash rl/run.sh benchmark [MINUTES]         offline: collect a Hopper-v5 data set (random + ARS policies), train
#                                              Primal.+DT and the softmax DT for MINUTES each (default 10) on CPU,
#                                              compare their evaluation returns with the data set's mean return
#   bash rl/run.sh paper D4RL_FILE [MODEL]     the paper's setting on a D4RL v2 file, e.g.
#                                              ~/.d4rl/datasets/hopper_medium_replay-v2.hdf5; MODEL primal+dt (default),
#                                              dt, or any causal attention (linear, cosine, ...)
#
# Outputs go under $RUNS (default runs/rl) and $DATA (default data/rl); every step writes JSON beside its log.
# Run from anywhere; set PYTHON to choose the interpreter (default: the repository's .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RUNS="${RUNS:-runs/rl}"
DATA="${DATA:-data/rl}"
MODE="${1:-benchmark}"

case "$MODE" in
  benchmark)
    MINUTES="${2:-10}"
    [ -f "$DATA/hopper-mixed.hdf5" ] || \
      "$PYTHON" -m rl collect --env hopper --out "$DATA/hopper-mixed.hdf5" --episodes 300 --ars-iterations 30 --seed 0
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$PYTHON" -m rl benchmark --dataset "$DATA/hopper-mixed.hdf5" \
      --models primal+dt dt --minutes "$MINUTES" --config rl/configs/cpu-benchmark.json --run-dir "$RUNS/benchmark"
    ;;
  paper)
    FILE="${2:?usage: run.sh paper D4RL_FILE [MODEL] (a D4RL v2 .hdf5, e.g. hopper_medium_replay-v2.hdf5)}"
    MODEL="${3:-primal+dt}"
    NAME="$(basename "$FILE" .hdf5)-${MODEL/+/plus}"
    "$PYTHON" -m rl train --config rl/configs/paper.json --dataset "$FILE" --model "$MODEL" --run-dir "$RUNS/$NAME"
    ;;
  *)
    echo "unknown mode '$MODE': use 'benchmark [MINUTES]' or 'paper D4RL_FILE [MODEL]'" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# UEA classification runs of the timeseries suite (Primal-Attention, Chen et al., NeurIPS 2023, Table 1).
#
#   bash timeseries/run.sh                              the main job: three models on JapaneseVowels, seed 666
#   bash timeseries/run.sh DATASET|all [MODEL|all] [extra flags for python -m timeseries ...]
#
# Examples:
#   bash timeseries/run.sh JapaneseVowels primalformer --seeds 666 1 2
#   DATA_DIR=/data/Multivariate_ts bash timeseries/run.sh all all --seeds 666 1 2
#   bash timeseries/run.sh Heartbeat flowformer --protocol holdout
#
# DATA_DIR: root of the Multivariate2018_ts archive (<DATA_DIR>/<Name>/<Name>_TRAIN.ts); without it only the
# data sets shipped with sktime (JapaneseVowels, BasicMotions) are found. RUNS: output folder (default
# runs/timeseries). PYTHON: interpreter (default: the repository's .venv). Runs resume where they stopped.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RUNS="${RUNS:-runs/timeseries}"
DATASET="${1:-JapaneseVowels}"
MODEL="${2:-all}"
shift $(( $# > 2 ? 2 : $# ))
ARGS=(--dataset "$DATASET" --model "$MODEL" --out "$RUNS")
[ -n "${DATA_DIR:-}" ] && ARGS+=(--data-dir "$DATA_DIR")
export MPLBACKEND=Agg
exec "$PYTHON" -m timeseries "${ARGS[@]}" "$@"

#!/usr/bin/env bash
# Long Range Arena with Primal-Attention and its rivals (Chen et al., NeurIPS 2023, Tables 2-3).
#
#   bash lra/run.sh smoke                      # offline: generate small ListOps + Adding, train briefly (CPU, minutes)
#   bash lra/run.sh prepare /path/lra_release /path/aclImdb /path/cifar-10-batches-py
#   bash lra/run.sh train   TASK ATTENTION [extra train flags]   # e.g. listops primalformer --seed 1
#   bash lra/run.sh paper   [ATTENTIONS...]    # all five tasks for each attention (GPU recommended)
#   bash lra/run.sh table   [extra table flags]                  # Table 3: time + memory of the first 1000 steps
#   bash lra/run.sh bench                      # CPU targets: ListOps<=512 PrimalFormer 10 min; Adding N=1024, linear mechanisms
#
# Environment: PYTHON (default .venv/bin/python when present, else python), DATA (default data/lra),
# RUNS (default runs/lra).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
DATA=${DATA:-data/lra}
RUNS=${RUNS:-runs/lra}
TASKS=(listops text retrieval image pathfinder)

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 1; }

command=${1:-}
[ -n "$command" ] || usage
shift

case "$command" in
    smoke)
        "$PYTHON" -m lra generate listops --out "$DATA/raw/listops-small" --train 2000 --dev 200 --test 200 \
            --min-length 20 --max-length 128 --prepare-to "$DATA/listops-small"
        "$PYTHON" -m lra train --task listops --attention primalformer --data "$DATA/listops-small" \
            --run-dir "$RUNS/smoke-listops" --steps 200 --lr 1e-3 --set train.warmup=20 --eval-every 50 \
            --eval-batches 4 --trim-padding
        "$PYTHON" -m lra generate adding --out "$DATA/adding-128" --length 128 --train 2000 --dev 200 --test 200
        "$PYTHON" -m lra train --task adding --attention linear --data "$DATA/adding-128" \
            --run-dir "$RUNS/smoke-adding" --steps 200 --eval-every 100
        ;;
    prepare)
        [ $# -ge 1 ] || usage
        release=$1
        "$PYTHON" -m lra prepare listops --raw "$release/listops-1000" --out "$DATA/listops"
        "$PYTHON" -m lra prepare retrieval --raw "$release/tsv_data" --out "$DATA/retrieval"
        "$PYTHON" -m lra prepare pathfinder --raw "$release/pathfinder32/curv_contour_length_14" --out "$DATA/pathfinder"
        if [ $# -ge 2 ]; then "$PYTHON" -m lra prepare text --raw "$2" --out "$DATA/text"; fi
        if [ $# -ge 3 ]; then "$PYTHON" -m lra prepare image --raw "$3" --out "$DATA/image"; fi
        ;;
    train)
        [ $# -ge 2 ] || usage
        task=$1 attention=$2
        shift 2
        "$PYTHON" -m lra train --task "$task" --attention "$attention" --data "$DATA/$task" "$@"
        ;;
    paper)
        attentions=("$@")
        [ ${#attentions[@]} -gt 0 ] || attentions=(softmax primal+trans primalformer)
        for attention in "${attentions[@]}"; do
            for task in "${TASKS[@]}"; do
                "$PYTHON" -m lra train --task "$task" --attention "$attention" --data "$DATA/$task"
            done
        done
        ;;
    table)
        "$PYTHON" -m lra table --tasks "${TASKS[@]}" --attentions softmax nystrom linear performer primal+trans primalformer \
            --steps 1000 --out-dir "$RUNS/efficiency" "$@"
        ;;
    bench)
        # CPU targets, one command each; results in docs/results/lra.md
        "$PYTHON" -m lra benchmark listops --minutes 10
        "$PYTHON" -m lra benchmark adding --length 1024 --total-minutes 15
        ;;
    *)
        usage
        ;;
esac

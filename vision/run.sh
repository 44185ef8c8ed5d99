#!/usr/bin/env bash
# Vision suite (Primal-Attention, Chen et al., NeurIPS 2023, Table 7a and Figure 2).
#
#   vision/run.sh fashion                    # offline benchmark: Primal.+DeiT and DeiT on Fashion-MNIST, 10 min each
#   vision/run.sh in100 /data/imagenet100    # paper: DeiT-S and Primal.+DeiT-S on ImageNet-100, all local GPUs
#   vision/run.sh in1k  /data/imagenet       # paper: the same on ImageNet-1K
#
# Every run resumes from its latest checkpoint when started again. Environment: PYTHON (default .venv/bin/python
# if present, else python), OUT (default runs/vision), MINUTES (Fashion-MNIST budget, default 10), NPROC (processes
# for torchrun, default: the number of visible GPUs, at least 1). Extra arguments go to every `train` call.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
OUT=${OUT:-runs/vision}
MODE=${1:-fashion}
shift || true

compare_and_plot() {  # $1 = DeiT run, $2 = Primal.+DeiT run, $3 = output stem
  "$PYTHON" -m vision compare "$1" "$2" --output "$3_summary.json"
  "$PYTHON" -m vision spectrum --checkpoint "$1/best.pt" "$2/best.pt" --label DeiT Primal.+DeiT --output "$3_spectrum"
}

case "$MODE" in
  fashion)
    MINUTES=${MINUTES:-10}
    for model in primal softmax; do
      "$PYTHON" -m vision train --config "fashion_mnist_$model" --max-minutes "$MINUTES" \
        --output-dir "$OUT/fashion_mnist_$model" "$@"
    done
    compare_and_plot "$OUT/fashion_mnist_softmax" "$OUT/fashion_mnist_primal" "$OUT/fashion_mnist"
    ;;
  in100|in1k)
    DATA=${1:?usage: vision/run.sh $MODE /path/to/dataset [train flags]}
    shift
    NPROC=${NPROC:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
    for model in deit_small primal_deit_small; do
      "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m vision train \
        --config "${model}_$MODE" --data-path "$DATA" --output-dir "$OUT/${model}_$MODE" "$@"
    done
    compare_and_plot "$OUT/deit_small_$MODE" "$OUT/primal_deit_small_$MODE" "$OUT/$MODE"
    ;;
  *)
    echo "unknown mode '$MODE': use fashion, in100 or in1k (see the comments at the top of vision/run.sh)" >&2
    exit 2
    ;;
esac

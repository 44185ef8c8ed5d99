#!/usr/bin/env bash
# Vision suite (Primal-Attention, Chen et al., NeurIPS 2023, Table 7a and Figure 2).
#
#   vision/run.sh fashion                    # offline benchmark: DeiT, then Primal.+DeiT, on Fashion-MNIST, 10 min each
#   vision/run.sh in100 /data/imagenet100    # paper: DeiT-S and Primal.+DeiT-S on ImageNet-100, all local GPUs
#   vision/run.sh in1k  /data/imagenet       # paper: the same on ImageNet-1K
#
# Every run resumes from its latest checkpoint when started again. Environment: PYTHON (default .venv/bin/python
# if present, else python), OUT (default runs/vision), MINUTES (Fashion-MNIST budget, default 10), FASHION_NPROC
# (Fashion-MNIST processes of one thread each, default 2), NPROC (ImageNet processes for torchrun, default: the
# number of visible GPUs, at least 1), REPORT (the Markdown page, default docs/results/vision.md for fashion and
# docs/results/vision_<mode>.md otherwise). Extra arguments go to every `train` call.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
OUT=${OUT:-runs/vision}
MODE=${1:-fashion}
shift || true

compare_and_plot() {  # $1 = DeiT run, $2 = Primal.+DeiT run, $3 = output stem, $4 = Markdown report, rest: report flags
  local deit=$1 primal=$2 stem=$3 report=$4
  shift 4
  "$PYTHON" -m vision compare "$deit" "$primal" --output "${stem}_summary.json"
  "$PYTHON" -m vision spectrum --checkpoint "$deit/best.pt" "$primal/best.pt" --label DeiT Primal.+DeiT --output "${stem}_spectrum"
  "$PYTHON" -m vision report "$deit" "$primal" --label DeiT Primal.+DeiT --spectrum "${stem}_spectrum" --output "$report" "$@"
}

case "$MODE" in
  fashion)
    # The two models run one after another, each alone on the machine: FASHION_NPROC processes (torchrun, DDP over
    # gloo) of one thread each, so each model gets both cores of a 2-core machine for MINUTES minutes.
    MINUTES=${MINUTES:-10}
    FASHION_NPROC=${FASHION_NPROC:-2}
    for model in softmax primal; do
      "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$FASHION_NPROC" -m vision train \
        --config "fashion_mnist_$model" --max-minutes "$MINUTES" --threads 1 --output-dir "$OUT/fashion_mnist_$model" "$@"
    done
    compare_and_plot "$OUT/fashion_mnist_softmax" "$OUT/fashion_mnist_primal" "$OUT/fashion_mnist" \
      "${REPORT:-docs/results/vision.md}" --target 85 \
      --title "Vision: Primal.+DeiT and DeiT on Fashion-MNIST, $MINUTES minutes on $FASHION_NPROC CPU cores each" \
      --command "vision/run.sh fashion${*:+ $*}" \
      --note "The models trained one after another, not side by side: each as $FASHION_NPROC processes of one thread (DDP over gloo) on a machine with $(nproc) cores, for $MINUTES minutes of wall-clock time, then one evaluation on the 10,000 test images."
    ;;
  in100|in1k)
    DATA=${1:?usage: vision/run.sh $MODE /path/to/dataset [train flags]}
    shift
    NPROC=${NPROC:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}
    for model in deit_small primal_deit_small; do
      "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m vision train \
        --config "${model}_$MODE" --data-path "$DATA" --output-dir "$OUT/${model}_$MODE" "$@"
    done
    compare_and_plot "$OUT/deit_small_$MODE" "$OUT/primal_deit_small_$MODE" "$OUT/$MODE" \
      "${REPORT:-docs/results/vision_$MODE.md}" --title "Vision: DeiT-S and Primal.+DeiT-S on $MODE" \
      --command "vision/run.sh $MODE $DATA${*:+ $*}"
    ;;
  *)
    echo "unknown mode '$MODE': use fashion, in100 or in1k (see the comments at the top of vision/run.sh)" >&2
    exit 2
    ;;
esac

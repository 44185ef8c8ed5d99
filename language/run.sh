#!/usr/bin/env bash
# The language suite's main job (Primal-Attention, Chen et al., NeurIPS 2023, Table 7b).
#
#   bash language/run.sh kjv [MINUTES]             offline: KJV corpus, Primal.+ vs softmax side by side (default 10 min)
#   bash language/run.sh wikitext103 RAW_DIR [primal|softmax|primal-original]
#                                                  the paper's WikiText-103 run: prepare, train, eval-lm (test)
#
# Outputs go under $RUNS (default runs/language) and $DATA (default data/language); every step writes JSON beside
# its log. Run from anywhere; set PYTHON to choose the interpreter (default: the repository's .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RUNS="${RUNS:-runs/language}"
DATA="${DATA:-data/language}"
MODE="${1:-kjv}"

case "$MODE" in
  kjv)
    MINUTES="${2:-10}"
    [ -f "$DATA/kjv-bin/dict.txt" ] || "$PYTHON" -m language prepare-kjv --out "$DATA/kjv" --dest "$DATA/kjv-bin"
    "$PYTHON" -m language benchmark-kjv --data "$DATA/kjv-bin" --out "$RUNS/kjv-benchmark" --minutes "$MINUTES"
    ;;
  wikitext103)
    RAW="${2:?usage: run.sh wikitext103 RAW_DIR (folder with wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)}"
    VARIANT="${3:-primal}"
    [ -f "$DATA/wikitext-103-bin/dict.txt" ] || \
      "$PYTHON" -m language prepare-wikitext --raw-dir "$RAW" --dest "$DATA/wikitext-103-bin" --workers "$(nproc)"
    "$PYTHON" -m language train --config "wikitext103-$VARIANT" --data "$DATA/wikitext-103-bin" \
      --save-dir "$RUNS/wikitext103-$VARIANT"
    "$PYTHON" -m language eval --data "$DATA/wikitext-103-bin" --path "$RUNS/wikitext103-$VARIANT/checkpoint_best.pt" \
      --subset test --tokens-per-sample 512 --context-window 400
    ;;
  *)
    echo "unknown mode '$MODE': use 'kjv [MINUTES]' or 'wikitext103 RAW_DIR [primal|softmax|primal-original]'" >&2
    exit 2
    ;;
esac

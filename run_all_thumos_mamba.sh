#!/usr/bin/env bash
# THUMOS-14: train, then evaluate, the three blocks of the paper table (ActionFormer window attention,
# ActionMamba ViM, ActionMamba DBM), and print their average mAP next to the published numbers.
# Every path comes from configs/thumos_internvideo2_6b_<block>.yaml (set dataset.feat_folder first).
# Logs: logs/thumos_internvideo2_6b_<block>_{train,eval}.log and logs/thumos_internvideo2_6b_table.md.
# The script stops at the first failure.
#
# Usage: bash run_all_thumos_mamba.sh
#   PYTHON=/path/to/python   interpreter to use (default: python)
#   OVERWRITE=1              replace earlier run folders of the same name (default: refuse to start)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
OVERWRITE=${OVERWRITE:-0}
STEM=thumos_internvideo2_6b
BLOCKS=(winattn vim dbm)
mkdir -p logs

# train.py writes <output_folder>/<config name>_<--output>. If that folder exists it would pick a
# new name (suffix _1), and the eval below would read the old checkpoint: refuse before training.
declare -A RUN
for BLOCK in "${BLOCKS[@]}"; do
  CFG=configs/${STEM}_${BLOCK}.yaml
  OUT=$("$PYTHON" -c "import sys; from libs.core.config import load_config; print(load_config(sys.argv[1]).output_folder)" "$CFG")
  RUN[$BLOCK]=${OUT%/}/${STEM}_${BLOCK}_${BLOCK}
  if [[ -e "${RUN[$BLOCK]}" && "$OVERWRITE" != 1 ]]; then
    echo "run_all: ${RUN[$BLOCK]} exists (an earlier run); move it away or rerun with OVERWRITE=1" >&2
    exit 1
  fi
done
TRAIN_FLAGS=()
if [[ "$OVERWRITE" == 1 ]]; then TRAIN_FLAGS=(--overwrite); fi

METRICS=()
for BLOCK in "${BLOCKS[@]}"; do
  CFG=configs/${STEM}_${BLOCK}.yaml
  "$PYTHON" -u train.py "$CFG" --output "$BLOCK" "${TRAIN_FLAGS[@]}" 2>&1 | tee "logs/${STEM}_${BLOCK}_train.log"
  "$PYTHON" -u eval.py "$CFG" "${RUN[$BLOCK]}/last.pth" \
    --results "${RUN[$BLOCK]}/eval_results.json" --metrics "${RUN[$BLOCK]}/eval_metrics.json" \
    2>&1 | tee "logs/${STEM}_${BLOCK}_eval.log"
  METRICS+=("${RUN[$BLOCK]}/eval_metrics.json")
done
"$PYTHON" tools/paper_table.py "${METRICS[@]}" --dataset thumos --blocks "${BLOCKS[@]}" | tee "logs/${STEM}_table.md"

#!/usr/bin/env bash
# Shared body of run_all_<dataset>_mamba.sh: train, then evaluate, the three blocks of the paper
# table (ActionFormer window attention, ActionMamba ViM, ActionMamba DBM) of one dataset, and print
# their average mAP at the best and the last epoch next to the published numbers into one summary
# file, logs/<STEM>_table.md (+ .json). Stops at the first failure.
#
# Usage: bash tools/run_all_blocks.sh CONFIG_STEM DATASET   (e.g. thumos_internvideo2_6b thumos)
#   PYTHON=/path/to/python   interpreter to use (default: python)
#   OVERWRITE=1              replace earlier run folders of the same name (default: refuse to start)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OVERWRITE=${OVERWRITE:-0}
STEM=$1          # config stem: configs/${STEM}_<block>.yaml
DATASET=$2       # paper-table row for tools/paper_table.py
BLOCKS=(winattn vim dbm)
mkdir -p logs

# train.py writes <output_folder>/<config name>_<--name>. If that folder exists it would pick a
# new name (suffix _1), and the eval below would read the old checkpoint: refuse before training.
declare -A RUN
for BLOCK in "${BLOCKS[@]}"; do
  CFG=configs/${STEM}_${BLOCK}.yaml
  RUN[$BLOCK]=$("$PYTHON" -c "import sys; from libs.core.config import load_config; from libs.engine.run_folder import run_folder_path; print(run_folder_path(load_config(sys.argv[1]), sys.argv[2]))" "$CFG" "$BLOCK")
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
  "$PYTHON" -u train.py "$CFG" --name "$BLOCK" "${TRAIN_FLAGS[@]}" 2>&1 | tee "logs/${STEM}_${BLOCK}_train.log"
  "$PYTHON" -u eval.py "$CFG" "${RUN[$BLOCK]}/last.pth" \
    --out "${RUN[$BLOCK]}/eval_results.json" --json "${RUN[$BLOCK]}/eval_metrics.json" \
    2>&1 | tee "logs/${STEM}_${BLOCK}_eval.log"
  METRICS+=("${RUN[$BLOCK]}")  # paper_table reads its metrics.json (best and last), else eval_metrics.json
done
# the summary: paper vs best and last epoch of each block (Markdown, and JSON for scripts)
"$PYTHON" tools/paper_table.py "${METRICS[@]}" --dataset "$DATASET" --blocks "${BLOCKS[@]}" \
  --out "logs/${STEM}_table.md" --json "logs/${STEM}_table.json"

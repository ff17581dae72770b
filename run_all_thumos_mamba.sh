#!/usr/bin/env bash
# THUMOS-14: train, then evaluate, the three blocks of the paper table (ActionFormer window attention,
# ActionMamba ViM, ActionMamba DBM), and print their average mAP next to the published numbers.
# Every path comes from configs/thumos_internvideo2_6b_<block>.yaml (set dataset.feat_folder first).
# Logs: logs/thumos_internvideo2_6b_<block>_{train,eval}.log. The script stops at the first failure.
# Usage: bash run_all_thumos_mamba.sh            (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
mkdir -p logs
METRICS=()
for BLOCK in winattn vim dbm; do
  CFG=configs/thumos_internvideo2_6b_${BLOCK}.yaml
  # train.py writes its run to <output_folder>/<config name>_<--output>
  RUN=$("$PYTHON" -c "import sys; from libs.core.config import load_config; print(load_config(sys.argv[1]).output_folder)" "$CFG")/thumos_internvideo2_6b_${BLOCK}_${BLOCK}
  "$PYTHON" -u train.py "$CFG" --output "$BLOCK" 2>&1 | tee "logs/thumos_internvideo2_6b_${BLOCK}_train.log"
  "$PYTHON" -u eval.py "$CFG" "$RUN/last.pth" --results "$RUN/eval_results.json" --metrics "$RUN/eval_metrics.json" 2>&1 | tee "logs/thumos_internvideo2_6b_${BLOCK}_eval.log"
  METRICS+=("$RUN/eval_metrics.json")
done
"$PYTHON" tools/paper_table.py "${METRICS[@]}" --dataset thumos --blocks winattn vim dbm | tee "logs/thumos_internvideo2_6b_table.md"

#!/usr/bin/env bash
# FineAction: train, then evaluate, the three blocks of the paper table (window attention, ViM, DBM)
# with configs/fineaction_internvideo2_1b_{winattn,vim,dbm}.yaml (set dataset.feat_folder first), then write one summary
# file: the paper's average mAP next to ours at the best and the last epoch, with the differences,
# logs/fineaction_internvideo2_1b_table.md (+ .json, also printed). Logs: logs/fineaction_internvideo2_1b_<block>_{train,eval}.log.
# Stops at the first failure. PYTHON=... picks the interpreter; OVERWRITE=1 replaces earlier runs.
set -euo pipefail
exec bash "$(dirname "$0")/tools/run_all_blocks.sh" fineaction_internvideo2_1b fineaction

"""The paper's numbers and protocol for tools/paper_table.py: mAP per dataset and block, the
tIoU set each dataset's average is over, and the names used in the tables.

A run compared with the paper must be evaluated at the same tIoU set: THUMOS-14 averages over
0.3:0.1:0.7, the others over the ten thresholds 0.50:0.05:0.95. `tiou_mismatch` says when a run's
set differs (its average, and the difference to the paper, are then not comparable).
"""

from typing import Optional

# README of OpenGVLab/video-mamba-suite temporal-action-localization (commit ec9108b), mAP %.
# Keys: tIoU -> mAP, plus "avg". The HACS "winattn" row repeats ANet's 0.75 / 0.95 numbers in the
# README (44.61 / 12.73); it is reproduced as published.
PAPER: dict[str, dict[str, dict]] = {
    "thumos": {
        "winattn": {0.3: 82.26, 0.4: 81.85, 0.5: 75.05, 0.6: 65.82, 0.7: 50.27, "avg": 71.86},
        "vim": {0.3: 86.22, 0.4: 82.87, 0.5: 76.42, 0.6: 66.43, 0.7: 50.25, "avg": 72.44},
        "dbm": {0.3: 86.89, 0.4: 83.09, 0.5: 76.90, 0.6: 65.91, 0.7: 50.82, "avg": 72.72},
    },
    "anet": {
        "winattn": {0.5: 61.47, 0.75: 44.61, 0.95: 12.73, "avg": 41.19},
        "vim": {0.5: 62.31, 0.75: 43.17, 0.95: 9.65, "avg": 41.77},
        "dbm": {0.5: 62.43, 0.75: 43.49, 0.95: 10.23, "avg": 42.02},
    },
    "hacs": {
        "winattn": {0.5: 62.62, 0.75: 44.61, 0.95: 12.73, "avg": 43.34},
        "vim": {0.5: 63.78, 0.75: 45.45, 0.95: 13.01, "avg": 44.26},
        "dbm": {0.5: 64.02, 0.75: 45.71, 0.95: 13.34, "avg": 44.56},
    },
    "fineaction": {
        "winattn": {0.5: 43.11, 0.75: 27.09, 0.95: 5.32, "avg": 27.22},
        "vim": {0.5: 44.15, 0.75: 28.30, 0.95: 6.14, "avg": 28.36},
        "dbm": {0.5: 45.44, 0.75: 28.82, 0.95: 6.79, "avg": 29.04},
    },
}
DATASET_NAMES = {"thumos": "THUMOS-14", "anet": "ActivityNet-1.3", "hacs": "HACS", "fineaction": "FineAction"}
BLOCK_NAMES = {"winattn": "ActionFormer (Win Attn)", "vim": "ActionMamba (ViM)", "dbm": "ActionMamba (DBM)"}
# config.yaml values -> table keys
CONFIG_DATASETS = {"thumos14": "thumos", "anet": "anet", "hacs": "hacs", "fineaction": "fineaction"}
CONFIG_BLOCKS = {"window_attn": "winattn", "vim": "vim", "dbm": "dbm"}
# `--dataset` also takes the config.yaml name (thumos14), as the errors that list those names say
DATASET_CHOICES = sorted(set(PAPER) | set(CONFIG_DATASETS))

# the tIoU set each dataset's paper average is over (2 decimals, as metrics are keyed)
PROTOCOL_TIOUS = {name: tuple(round(0.5 + 0.05 * i, 2) for i in range(10)) for name in PAPER}
PROTOCOL_TIOUS["thumos"] = (0.3, 0.4, 0.5, 0.6, 0.7)


def average_note(dataset: str) -> str:
    return "tIoU 0.3:0.1:0.7" if dataset == "thumos" else "tIoU 0.50:0.05:0.95 (10 thresholds)"


def tiou_mismatch(dataset: str, maps: dict) -> Optional[str]:
    """None when `maps` ({tIoU: mAP, "avg": ...}) covers exactly the paper's tIoU set of `dataset`,
    else a sentence saying at which set the run was evaluated instead."""
    tious = tuple(sorted(t for t in maps if t != "avg"))
    if tious == PROTOCOL_TIOUS[dataset]:
        return None
    return (f"evaluated at tIoU {', '.join(f'{t:.2f}' for t in tious)}, not at the paper's "
            f"{DATASET_NAMES[dataset]} set ({average_note(dataset)}): its average mAP and Δ are not "
            "comparable to the paper's")

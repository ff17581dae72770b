"""Diagnosis of a training run's predictions: from its config, or from its raw prediction cache.

    run_diagnosis_for_config(cfg, "results.json", "diag/")     # eval.py --diagnose diag/
    run_diagnosis_for_config(cfg, detections, "diag/", id_to_name=...)
    detections, id_to_name, config = load_raw_results("raw.pt")  # eval.py --save-raw output

Only here does the diagnosis import torch-side code (`libs.inference`, `libs.core.config`), and
only when it is called.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence, Union

from libs.diagnosis.api import run_diagnosis

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
RAW_SUFFIXES = (".pt", ".pth")


def protocol_for_dataset(name: str) -> str:
    """DETAD's settings for a `dataset.name`: THUMOS-14's, or ActivityNet's for the others."""
    return "thumos14" if name == "thumos14" else "activitynet"


def is_raw_cache(path: PathLike) -> bool:
    """A raw prediction cache (eval.py --save-raw) rather than a results JSON, by its suffix."""
    return os.fspath(path).lower().endswith(RAW_SUFFIXES)


def load_raw_results(path: PathLike, config_path: Optional[str] = None) -> tuple[list, dict, dict]:
    """Post-process a raw prediction cache with its run's test settings.

    Args:
        path: file written by ``eval.py --save-raw`` (`libs.inference.RawPredictions`).
        config_path: YAML whose ``test.*`` settings to use instead of the ones saved in the file.
    Returns:
        (detections in seconds, label id -> class name, the config as a plain dict).
    """
    from libs.core.config import config_to_dict, load_config
    from libs.inference import RawPredictions

    raw = RawPredictions.load(path)
    if config_path is None and not raw.config:
        raise ValueError(f"{os.fspath(path)}: holds no config; give the run's --config")
    cfg = load_config(config_path) if config_path else load_config(data=dict(raw.config))
    return raw.postprocess(cfg.test), dict(raw.id_to_name), config_to_dict(cfg)


def run_diagnosis_for_config(
    cfg: Any,
    results: Union[PathLike, Mapping[str, Any], Sequence[Any]],
    out_dir: PathLike,
    *,
    id_to_name: Optional[Mapping[int, str]] = None,
    figures: bool = True,
) -> dict:
    """`run_diagnosis` on the evaluation split of a run's config (`libs.core.config.Config`).

    Args:
        cfg: the run's config: annotation file, val split, blocked / excluded videos.
        results: results JSON path or dict, a raw prediction cache (.pt), or `Detections`.
        out_dir: where diagnosis.json, the PNGs and report.html go.
        id_to_name: label id -> class name, for `Detections` (default: the GT's label_id).
    """
    from libs.core.config import config_to_dict
    from libs.evaluation.protocol import blocked_ids

    if isinstance(results, (str, os.PathLike)) and is_raw_cache(results):
        results, id_to_name, _ = load_raw_results(results)
    if cfg.eval.remove_duplicates:
        logger.warning(
            "eval.remove_duplicates is on, but the diagnosis uses the ground truth as released "
            "(as DETAD does): its average mAP can differ from the evaluation's"
        )
    blocked = list(dict.fromkeys([*blocked_ids(cfg.eval), *cfg.eval.exclude_videos]))
    return run_diagnosis(
        cfg.dataset.json_file, results, list(cfg.dataset.val_split), out_dir,
        protocol_for_dataset(cfg.dataset.name), config=config_to_dict(cfg), figures=figures,
        blocked_videos=blocked, label_names=id_to_name,
    )  # fmt: skip

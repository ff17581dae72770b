"""The evaluation protocol of a config (`eval:` section, `libs.core.config.EvalCfg`).

`build_evaluator` is the one place the config's protocol becomes a `DetectionMAP`; train.py,
eval.py and tools/rescore.py all go through it, and every `EvalResult` it produces carries the
protocol (printed by `format_table`, written to metrics.json under "protocol").

Blocked and excluded videos are both removed from the GT and from the predictions; they are kept
apart in the protocol because they mean different things (ActivityNet's official blocked list vs
videos whose annotations are known to be wrong, e.g. THUMOS-14's video_test_0000270).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from libs.core.config import EvalCfg
from libs.core.safe_io import read_json
from libs.evaluation.detection_map import DetectionMAP, EvalResult
from libs.evaluation.ground_truth import GtSource


def read_blocked_videos_file(path: Union[str, Path]) -> list[str]:
    """A JSON list of video ids; a clear ValueError for anything else."""
    try:
        data = read_json(path, "blocked videos")
    except ValueError as exc:
        raise ValueError(f"eval.blocked_videos_file: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        raise ValueError(
            f"eval.blocked_videos_file {path}: expected a JSON list of video ids (strings)"
        )
    return data


def blocked_ids(eval_cfg: EvalCfg) -> list[str]:
    """`eval.blocked_videos` plus the ids of `eval.blocked_videos_file`, in order, no repeats."""
    ids = list(eval_cfg.blocked_videos)
    if eval_cfg.blocked_videos_file:
        ids += read_blocked_videos_file(eval_cfg.blocked_videos_file)
    return list(dict.fromkeys(ids))


def protocol_of(eval_cfg: EvalCfg, **extra: Any) -> dict[str, Any]:
    """The JSON-ready protocol record (metrics.json "protocol"); `extra` adds e.g. epoch=3."""
    return {
        "remove_duplicates": bool(eval_cfg.remove_duplicates),
        "blocked_videos": blocked_ids(eval_cfg),
        "blocked_videos_file": eval_cfg.blocked_videos_file,
        "exclude_videos": list(dict.fromkeys(eval_cfg.exclude_videos)),
        "checkpoint": eval_cfg.checkpoint,
        **extra,
    }


class ProtocolEvaluator:
    """`DetectionMAP` under a protocol: `evaluate` returns results that carry the protocol."""

    def __init__(
        self,
        gt: GtSource,
        split: Union[str, Sequence[str]],
        tiou_thresholds: Iterable[float],
        protocol: dict[str, Any],
    ):
        self.protocol = protocol
        removed = list(protocol["blocked_videos"]) + list(protocol["exclude_videos"])
        self.detection_map = DetectionMAP(
            gt,
            split,
            tiou_thresholds,
            remove_duplicates=protocol["remove_duplicates"],
            blocked_videos=removed,
        )

    def evaluate(self, predictions) -> EvalResult:
        result = self.detection_map.evaluate(predictions)
        result.protocol = dict(self.protocol)
        return result


def build_evaluator(
    eval_cfg: EvalCfg,
    gt: GtSource,
    split: Union[str, Sequence[str]],
    tiou_thresholds: Iterable[float],
) -> ProtocolEvaluator:
    """The evaluator of one split under the config's `eval:` protocol."""
    return ProtocolEvaluator(gt, split, tiou_thresholds, protocol_of(eval_cfg))

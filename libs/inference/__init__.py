"""Inference: features -> model -> raw per-video candidates -> detections -> metrics and files.

    predict.py       collect_raw / predict_batch: the model pass; the one model -> CPU hand-off
    raw.py           RawPredictions: pre-NMS candidates + per-video metadata, saved / loaded
    postprocess.py   NMS / soft-NMS / voting, grid -> seconds, clamp (per video, CPU)
    score_fusion.py  external video-level classifier fusion (ActivityNet / HACS)
    evaluate.py      score (post-process + mAP), write_eval_files, evaluate (all of it)

Used by eval.py, the validation inside training (libs/engine/validation.py), tools/infer.py and
tools/rescore.py. Imports libs.core, libs.ops (NMS) and libs.evaluation, never libs.engine.
"""

from libs.inference.evaluate import evaluate, score, write_eval_files
from libs.inference.postprocess import postprocess, postprocess_video
from libs.inference.predict import collect_raw, model_device, predict_batch
from libs.inference.raw import RawPredictions, VideoMeta

__all__ = [
    "RawPredictions",
    "VideoMeta",
    "collect_raw",
    "evaluate",
    "model_device",
    "postprocess",
    "postprocess_video",
    "predict_batch",
    "score",
    "write_eval_files",
]

"""Evaluation: ActivityNet detection mAP (official semantics, vectorised) and result I/O."""

from libs.evaluation.detection_map import DetectionMAP, EvalResult, describe_protocol, format_table
from libs.evaluation.predictions import detections_to_results
from libs.evaluation.protocol import build_evaluator, protocol_of

__all__ = [
    "DetectionMAP",
    "EvalResult",
    "build_evaluator",
    "describe_protocol",
    "detections_to_results",
    "format_table",
    "protocol_of",
]

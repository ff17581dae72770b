"""Evaluation: ActivityNet detection mAP (official semantics, vectorised) and result I/O."""

from libs.evaluation.detection_map import DetectionMAP, EvalResult, format_table
from libs.evaluation.predictions import detections_to_results

__all__ = ["DetectionMAP", "EvalResult", "format_table", "detections_to_results"]

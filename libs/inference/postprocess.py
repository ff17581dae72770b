"""Raw model candidates (feature grid) -> final per-video detections in seconds.

    postprocess(raw, batch.samples, cfg.test) -> list[Detections]   (unit "sec")

Per video, on CPU: NMS (`libs.ops.nms.batched_nms`, as ActionFormer's `postprocessing`), then
grid -> seconds with the sample's own fps / stride / clip length, then clamp to
[0, duration]. When `cfg.ext_score_file` is set, the video-level classifier fusion of
`libs.inference.score_fusion` follows (ActivityNet / HACS). NMS is kept out of the model so
eval.py can cache raw detections and re-tune these knobs without a GPU (raw.py).
"""

import logging
from typing import Sequence

import torch

from libs.core.config import NMS_METHODS, TestCfg
from libs.core.segments import clamp_segments, grid_to_seconds
from libs.core.structures import Detections, VideoSample
from libs.ops.nms import batched_nms
from libs.inference.score_fusion import fuse_external_scores, load_external_scores

logger = logging.getLogger(__name__)



def _check_cfg(cfg: TestCfg) -> None:
    if cfg.nms_method not in NMS_METHODS:
        raise ValueError(
            f"test.nms_method must be one of {sorted(NMS_METHODS)}, got {cfg.nms_method!r}"
        )


def _check_pair(raw: Detections, sample: VideoSample) -> None:
    if raw.video_id != sample.video_id:
        raise ValueError(
            f"raw detections of '{raw.video_id}' paired with sample '{sample.video_id}'"
        )
    if raw.unit != "grid":
        raise ValueError(
            f"video '{raw.video_id}': postprocess expects grid-unit detections, got {raw.unit!r}"
        )
    if raw.segments.device.type != "cpu":
        raise ValueError(
            f"video '{raw.video_id}': postprocess expects CPU tensors, got {raw.segments.device}; "
            "run the model through libs.inference.predict_batch, which moves its output"
        )


@torch.no_grad()
def postprocess_video(
    raw: Detections, sample: VideoSample, cfg: TestCfg
) -> Detections:
    """NMS + grid -> seconds + clamp for one video.

    Args:
        raw: pre-NMS candidates on the CPU (`predict_batch` moves them), segments [N, 2] in
            feature-grid units.
        sample: the video's metadata (fps, feat_stride, feat_num_frames, duration).
        cfg: test config (nms_method, iou_threshold, min_score, max_seg_num, nms_sigma,
            multiclass_nms, voting_thresh).
    Returns:
        Detections on CPU, unit "sec": segments [K, 2] within [0, duration], by descending
        score (unless nms_method is "none", which keeps the model's order).
    """
    _check_cfg(cfg)
    _check_pair(raw, sample)
    segs = raw.segments.detach().float()  # [N, 2]; NMS runs on CPU (small N after top-k)
    scores, labels = raw.scores.detach().float(), raw.labels.detach()  # [N], [N]
    if cfg.nms_method != "none":  # "none" keeps the model's candidates and order
        segs, scores, labels = batched_nms(
            segs, scores, labels, cfg.iou_threshold, cfg.min_score, cfg.max_seg_num,
            method=cfg.nms_method, multiclass=cfg.multiclass_nms, sigma=cfg.nms_sigma,
            voting_thresh=cfg.voting_thresh,
        )  # fmt: skip
    segs = grid_to_seconds(segs, sample.fps, sample.feat_stride, sample.feat_num_frames)  # [K, 2]
    segs = clamp_segments(segs, sample.duration)  # reference: <= 0 -> 0, >= duration -> duration
    return Detections(raw.video_id, segs, scores, labels, unit="sec")


def postprocess(
    raw: Sequence[Detections], samples: Sequence[VideoSample], cfg: TestCfg
) -> list[Detections]:
    """Post-process a batch: `postprocess_video` per video, then external-score fusion if set.

    Args:
        raw: per-video grid-unit candidates from `ActionDetector.predict`.
        samples: the matching `VideoSample`s (same order), e.g. `batch.samples`.
        cfg: the test config; `cfg.ext_score_file` (JSON) enables the top-2 class fusion.
    Returns:
        list of Detections in seconds, one per video, same order as `raw`.
    """
    _check_cfg(cfg)
    if len(raw) != len(samples):
        raise ValueError(f"postprocess: {len(raw)} raw detections for {len(samples)} samples")
    dets = [postprocess_video(r, s, cfg) for r, s in zip(raw, samples)]
    if cfg.ext_score_file:
        ext_scores = load_external_scores(cfg.ext_score_file)
        dets = fuse_external_scores(dets, ext_scores, source=cfg.ext_score_file)
    return dets

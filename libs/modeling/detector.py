"""The single-stage point-based action detector (ActionFormer's PtTransformer)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from libs.core.config import TestCfg, TrainCfg
from libs.core.structures import Batch, Detections

from .assigner import label_points
from .backbone import Backbone
from .heads import ClsHead, RegHead
from .losses import ctr_diou_loss_1d, ema_loss_normalizer, sigmoid_focal_loss
from .points import PointGenerator

logger = logging.getLogger(__name__)


class ActionDetector(nn.Module):
    """backbone → neck → points + heads; training returns weighted losses, eval raw detections.

    Everything is in feature-grid units; the model never sees seconds or fps. Padding and masks
    come from `collate` (T must be a multiple of `size_divisor`).

    State:
        loss_normalizer: float64 buffer [], EMA (momentum 0.9) of the number of positive points,
            the divisor of both losses; saved in the state_dict with the weights (the reference
            keeps it as a plain attribute and saves it nowhere). A checkpoint without it (the
            published `.pth.tar` files) loads, keeping `train.init_loss_norm`.
        last_num_pos: positive points of the last training forward (gradient accumulation).
    """

    optional_state_keys = ("loss_normalizer",)  # loading a state_dict without them keeps their value

    def __init__(
        self,
        backbone: Backbone,
        neck: nn.Module,
        cls_head: ClsHead,
        reg_head: RegHead,
        points: PointGenerator,
        *,
        num_classes: int,
        train: TrainCfg,
        test: TestCfg,
    ):
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.cls_head, self.reg_head = cls_head, reg_head
        self.point_generator = points
        self.num_classes = num_classes
        self.train_cfg, self.test_cfg = train, test  # not `self.train`: that is nn.Module.train()
        self.register_buffer(
            "loss_normalizer", torch.tensor(float(train.init_loss_norm), dtype=torch.float64)
        )
        self.last_num_pos = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Fill in the optional keys a checkpoint lacks (like BatchNorm's num_batches_tracked)."""
        for name in self.optional_state_keys:
            if prefix + name not in state_dict:
                state_dict[prefix + name] = getattr(self, name).detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def size_divisor(self) -> int:
        """Inputs must be padded to a multiple of this (the reference's max_div_factor)."""
        return self.backbone.size_divisor

    def forward(self, batch: Batch) -> dict[str, Tensor] | list[Detections]:
        """Training: {"cls_loss", "reg_loss"}, already weighted (sum them); eval: Detections.

        Args:
            batch: feats [B, C_in, T], masks [B, 1, T] bool, samples (GT segments in grid units).
        """
        T = batch.feats.shape[-1]
        if T % self.size_divisor != 0:
            raise ValueError(
                f"ActionDetector: input length {T} is not a multiple of size_divisor "
                f"{self.size_divisor}; pad it in collate"
            )
        feats, masks = self.backbone(batch.feats, batch.masks)
        fpn_feats, fpn_masks = self.neck(feats, masks)
        points = self.point_generator(fpn_feats)  # per level [T_l, 4]
        # heads give [B, C, T_l]; the losses and the decoding work point-major: [B, T_l, C]
        cls_logits = [x.permute(0, 2, 1) for x in self.cls_head(fpn_feats, fpn_masks)]  # [B,T_l,C]
        offsets = [x.permute(0, 2, 1) for x in self.reg_head(fpn_feats, fpn_masks)]  # [B, T_l, 2]
        level_masks = [m.squeeze(1) for m in fpn_masks]  # [B, T_l]
        if self.training:
            return self.losses(batch, points, level_masks, cls_logits, offsets)
        return self.predict(batch, points, level_masks, cls_logits, offsets)

    def losses(
        self,
        batch: Batch,
        points: list[Tensor],
        masks: list[Tensor],
        cls_logits: list[Tensor],
        offsets: list[Tensor],
    ) -> dict[str, Tensor]:
        """Focal loss over valid points + centre-DIoU over positives, both / the EMA normaliser.

        Args:
            points: per level [T_l, 4]; masks: per level [B, T_l]; cls_logits: per level
                [B, T_l, C]; offsets: per level [B, T_l, 2].
        """
        cfg = self.train_cfg
        gt_cls, gt_offsets = label_points(
            points,
            [s.segments for s in batch.samples],
            [s.labels for s in batch.samples],
            self.num_classes,
            cfg.center_sample,
            cfg.center_sample_radius,
        )  # [B, P, C], [B, P, 2]
        valid = torch.cat(masks, dim=1)  # [B, P]
        pos = (gt_cls.sum(-1) > 0) & valid  # [B, P]
        num_pos = int(pos.sum().item())
        self.last_num_pos = num_pos
        normalizer = ema_loss_normalizer(float(self.loss_normalizer), num_pos)
        self.loss_normalizer.fill_(normalizer)

        eps = cfg.label_smoothing
        gt_target = gt_cls[valid] * (1 - eps) + eps / (self.num_classes + 1)  # [N_valid, C]
        cls_loss = sigmoid_focal_loss(
            torch.cat(cls_logits, dim=1)[valid], gt_target, reduction="sum"
        )
        cls_loss = cls_loss / normalizer

        pred_offsets = torch.cat(offsets, dim=1)[pos]  # [N_pos, 2]
        if num_pos == 0:  # keeps the regression head in the graph with a zero gradient
            reg_loss = 0 * pred_offsets.sum()
        else:
            reg_loss = (
                ctr_diou_loss_1d(pred_offsets, gt_offsets[pos], reduction="sum") / normalizer
            )
        if cfg.loss_weight > 0:
            weight = cfg.loss_weight
        else:  # auto-balance: the weighted reg loss matches the cls loss
            weight = cls_loss.detach() / max(reg_loss.item(), 0.01)
        return {"cls_loss": cls_loss, "reg_loss": reg_loss * weight}

    @torch.no_grad()
    def predict(
        self,
        batch: Batch,
        points: list[Tensor],
        masks: list[Tensor],
        cls_logits: list[Tensor],
        offsets: list[Tensor],
    ) -> list[Detections]:
        """Pre-NMS candidates per video, on the model's device, grid units (NMS comes later)."""
        results = []
        for b, sample in enumerate(batch.samples):
            per_level = [
                self._decode_level(pts, m[b], cls[b], off[b])
                for pts, m, cls, off in zip(points, masks, cls_logits, offsets)
            ]
            segs, scores, labels = (torch.cat(x) for x in zip(*per_level))
            results.append(Detections(sample.video_id, segs, scores, labels, unit="grid"))
        return results

    def _decode_level(
        self, points: Tensor, mask: Tensor, logits: Tensor, offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Top candidates of one video at one level.

        points [T, 4], mask [T], logits [T, C], offsets [T, 2]
        -> segments [K, 2], scores [K], labels [K].
        """
        cfg = self.test_cfg
        prob = (logits.sigmoid() * mask[:, None]).flatten()  # [T·C], index = point·C + class
        keep = prob > cfg.pre_nms_thresh
        cand = keep.nonzero(as_tuple=True)[0]  # [K0]
        prob, order = prob[keep].sort(descending=True)
        k = min(cfg.pre_nms_topk, len(cand))  # top-k per level, as in the reference
        prob, cand = prob[:k], cand[order[:k]]
        pt = torch.div(cand, self.num_classes, rounding_mode="floor")  # [K]
        labels = torch.remainder(cand, self.num_classes)
        t, stride = points[pt, 0], points[pt, 3]
        starts, ends = t - offsets[pt, 0] * stride, t + offsets[pt, 1] * stride  # [K]
        segs = torch.stack([starts, ends], dim=-1)  # [K, 2]
        long_enough = (segs[:, 1] - segs[:, 0]) > cfg.duration_thresh  # grid units
        return segs[long_enough], prob[long_enough], labels[long_enough]

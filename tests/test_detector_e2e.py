"""End-to-end detector edge cases (detectron2 style) on tiny models, for every registered block."""

import logging

import pytest
import torch
from torch import nn

from libs.core import config
from libs.core.config import BlockCfg, ModelCfg, TrainCfg
from libs.core.structures import Batch, Detections, VideoSample
from libs.modeling import ActionDetector, build_model
from libs.modeling.backbone import Backbone
from libs.modeling.blocks import BLOCKS, TemporalBlock
from tests.test_blocks import padding_invariance

C_IN, DIM, T, NUM_CLASSES, INIT_NORM = 8, 16, 64, 3, 100.0
BLOCK_NAMES = sorted(BLOCKS)


def tiny_cfg(block="window_attn", **overrides) -> ModelCfg:
    cfg = ModelCfg(
        block=BlockCfg(block, {}),
        arch=(2, 1, 2),
        regression_range=((0, 4), (4, 8), (8, 10000)),
        n_mha_win_size=5,
        embd_dim=DIM,
        fpn_dim=DIM,
        head_dim=DIM,
        input_dim=C_IN,
        num_classes=NUM_CLASSES,
        max_seq_len=T,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def tiny_model(block="window_attn", train=None, test=None, **overrides) -> ActionDetector:
    train = train or TrainCfg(init_loss_norm=INIT_NORM)
    return build_model(tiny_cfg(block, **overrides), train, test or config.TestCfg(pre_nms_topk=20))


def sample(video_id, length, segments=None, labels=None) -> VideoSample:
    segs = None if segments is None else torch.tensor(segments, dtype=torch.float32).reshape(-1, 2)
    labs = None if labels is None else torch.tensor(labels, dtype=torch.long)
    return VideoSample(
        video_id, torch.randn(C_IN, length), segs, labs, 30.0, length * 4 / 30.0, 4.0, 16.0
    )


def make_batch(samples, padded_len) -> Batch:
    feats = torch.zeros(len(samples), C_IN, padded_len)
    masks = torch.zeros(len(samples), 1, padded_len, dtype=torch.bool)
    for i, s in enumerate(samples):
        feats[i, :, : s.num_feats] = s.feats
        masks[i, :, : s.num_feats] = True
    return Batch(feats, masks, samples)


def train_step(model, batch):
    model.train()
    losses = model(batch)
    assert set(losses) == {"cls_loss", "reg_loss"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, f"no (finite) gradient for {missing}"
    return losses


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_train_step_with_gt(block):
    model = tiny_model(block)
    batch = make_batch(
        [sample("a", 64, [[3, 10], [20, 45]], [0, 2]), sample("b", 50, [[5, 30]], [1])], T
    )
    losses = train_step(model, batch)
    assert losses["cls_loss"] > 0 and losses["reg_loss"] > 0
    assert INIT_NORM * 0.9 < float(model.loss_normalizer) < INIT_NORM  # 0.9 · 100 + 0.1 · num_pos
    # a float64 buffer, saved with the weights (it was a plain float before)
    assert model.loss_normalizer.dtype == torch.float64 and "loss_normalizer" in model.state_dict()


@pytest.mark.parametrize("block", BLOCK_NAMES)
@pytest.mark.parametrize("empty", ["none", "zero_rows"])
def test_train_step_with_empty_gt(block, empty):
    model = tiny_model(block)
    gt = (None, None) if empty == "none" else (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    samples = [sample("a", 64), sample("b", 40)]
    for s in samples:
        s.segments, s.labels = gt
    losses = train_step(model, make_batch(samples, T))
    assert losses["reg_loss"].item() == 0.0 and losses["cls_loss"] > 0
    assert float(model.loss_normalizer) == pytest.approx(0.9 * INIT_NORM + 0.1 * 1)  # max(num_pos, 1)


def test_half_empty_batch():
    model = tiny_model("window_attn")
    losses = train_step(model, make_batch([sample("a", 64, [[8, 30]], [1]), sample("b", 33)], T))
    assert losses["reg_loss"] > 0


def test_loss_weight_and_auto_balance():
    batch = make_batch([sample("a", 64, [[3, 10], [20, 45]], [0, 2])], T)
    torch.manual_seed(1)
    base = tiny_model(train=TrainCfg(init_loss_norm=INIT_NORM, loss_weight=1.0)).train()(batch)
    torch.manual_seed(1)
    doubled = tiny_model(train=TrainCfg(init_loss_norm=INIT_NORM, loss_weight=2.0)).train()(batch)
    torch.testing.assert_close(doubled["reg_loss"], 2 * base["reg_loss"])
    torch.manual_seed(1)
    auto = tiny_model(train=TrainCfg(init_loss_norm=INIT_NORM, loss_weight=-1.0)).train()(batch)
    # auto-balance: reg weighted up to the cls loss
    torch.testing.assert_close(auto["reg_loss"], auto["cls_loss"])


def _check_detections(dets, test_cfg, levels):
    assert dets.unit == "grid" and dets.segments.shape == (len(dets), 2)
    assert (
        dets.labels.dtype == torch.long and ((dets.labels >= 0) & (dets.labels < NUM_CLASSES)).all()
    )
    assert (dets.scores > test_cfg.pre_nms_thresh).all() and (dets.scores <= 1).all()
    assert ((dets.segments[:, 1] - dets.segments[:, 0]) > test_cfg.duration_thresh).all()
    assert len(dets) <= test_cfg.pre_nms_topk * levels


@pytest.mark.parametrize("block", BLOCK_NAMES)
def test_eval_long_video_padded_to_size_divisor(block):
    model = tiny_model(block).eval()
    assert model.size_divisor == 16  # max(1·4, 2·4, 4·4) for window 5 over 3 levels
    length = 100  # > max_seq_len: collate pads to the next multiple of size_divisor
    padded = -(-length // model.size_divisor) * model.size_divisor
    s = sample("long", length)
    with torch.no_grad():
        dets = model(make_batch([s], padded))
    assert isinstance(dets, list) and len(dets) == 1 and isinstance(dets[0], Detections)
    assert dets[0].video_id == "long" and len(dets[0]) > 0
    _check_detections(dets[0], model.test_cfg, levels=3)
    if padding_invariance(block)[0]:  # more padding → the same candidates
        with torch.no_grad():
            more = model(make_batch([s], padded + 2 * model.size_divisor))[0]
        assert len(more) == len(dets[0])
        torch.testing.assert_close(more.scores.sort().values, dets[0].scores.sort().values)


def test_eval_batch_of_two_gives_one_detections_per_video():
    model = tiny_model().eval()
    with torch.no_grad():
        dets = model(make_batch([sample("a", 64), sample("b", 17)], T))
    assert [d.video_id for d in dets] == ["a", "b"]
    for d in dets:
        _check_detections(d, model.test_cfg, levels=3)


def test_length_must_be_a_multiple_of_size_divisor():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="size_divisor"):
        model(make_batch([sample("a", 40)], 40))


def test_build_model_validates_config():
    with pytest.raises(ValueError, match="load_config"):
        build_model(tiny_cfg(input_dim=0), TrainCfg(), config.TestCfg())
    with pytest.raises(ValueError, match="multiple of the backbone size divisor"):
        build_model(tiny_cfg(max_seq_len=72), TrainCfg(), config.TestCfg())
    model = tiny_model(fpn_type="fpn")
    assert hasattr(model.neck, "lateral_convs")
    assert model.cls_head.cls_head.conv.bias[0].item() == pytest.approx(-4.59512, abs=1e-5)


# reference max_div_factor per dataset config: (arch, windows) -> divisor
DATASET_DIVISORS = {
    "thumos": ((2, 2, 5), [19] * 6, 576),
    "anet": ((2, 2, 5), [7] * 5 + [-1], 96),
    "hacs": ((2, 2, 5), [25] * 5 + [-1], 384),
    "fineaction": ((2, 2, 7), [7] * 8, 768),
}


@pytest.mark.parametrize("block", BLOCK_NAMES)
@pytest.mark.parametrize("dataset", sorted(DATASET_DIVISORS))
def test_size_divisor_reproduces_reference_padding(block, dataset):
    arch, windows, expected = DATASET_DIVISORS[dataset]
    backbone = Backbone(C_IN, DIM, 3, arch, 2, True, block, {}, windows, 2304)
    assert backbone.size_divisor == expected


class _ProbeBlock(TemporalBlock):
    """A block with a tagged bias and an odd divisor: probes the backbone's init and divisor."""

    def __init__(self, dim, stride=1, drop_path=0.0):
        super().__init__(dim, stride, drop_path)
        self.keep = nn.Linear(dim, dim)
        self.reset = nn.Conv1d(dim, dim, 1)
        nn.init.constant_(self.keep.bias, 0.5)
        nn.init.constant_(self.reset.bias, 0.5)
        self.keep.bias._no_reinit = True

    def size_divisor(self):
        return 7

    def forward(self, x, mask):
        return x[..., :: self.stride], mask[..., :: self.stride]


@pytest.fixture
def probe_block():
    BLOCKS["_probe"] = _ProbeBlock  # not via register(): removed again after the test
    yield "_probe"
    del BLOCKS["_probe"]


def test_backbone_bias_init_and_divisor_rule(probe_block):
    backbone = Backbone(C_IN, DIM, 3, (1, 1, 2), 2, False, probe_block, {}, [-1, -1, -1], T)
    assert (backbone.stem[0].keep.bias == 0.5).all(), "_no_reinit biases must survive the init"
    assert (backbone.stem[0].reset.bias == 0).all() and (backbone.embd[0].conv.bias == 0).all()
    assert backbone.size_divisor == 4 * 7  # top stride × block divisor


def test_absolute_position_embedding(caplog):
    def backbone(block):
        return Backbone(C_IN, DIM, 3, (2, 0, 0), 2, True, block, {}, [5], 16, use_abs_pe=True)

    bb = backbone("window_attn")
    assert "pos_embd" not in bb.state_dict()
    mask = torch.ones(1, 1, 16, dtype=torch.bool)
    mask[..., 12:] = False
    feats, _ = bb.train()(torch.zeros(1, C_IN, 16), mask)  # zero input: the embedding gives 0
    torch.testing.assert_close(feats[0], bb.pos_embd * mask)
    with pytest.raises(ValueError, match="exceeds"):
        bb(torch.zeros(1, C_IN, 32), torch.ones(1, 1, 32, dtype=torch.bool))
    # inference on a longer input stretches the table
    feats, _ = bb.eval()(torch.zeros(1, C_IN, 32), torch.ones(1, 1, 32, dtype=torch.bool))
    torch.testing.assert_close(
        feats[0], nn.functional.interpolate(bb.pos_embd, 32, mode="linear", align_corners=False)
    )
    with caplog.at_level(logging.WARNING):
        assert not backbone(
            "conv"
        ).use_abs_pe  # the reference ignores the flag outside convTransformer
    assert "ignored" in caplog.text


def test_window_size_in_block_args_is_rejected():
    with pytest.raises(ValueError, match="n_mha_win_size"):
        Backbone(C_IN, DIM, 3, (2, 1, 2), 2, True, "window_attn", {"window_size": 9}, [5] * 3, T)

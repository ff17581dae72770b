"""Checkpoint compatibility: state_dict names, shapes and counts of the published layout.

The expected names were checked against actionformer_release libs/modeling (TransformerBlock,
LocalMaskedMHCA, ConvTransformerBackbone, FPNIdentity, PtTransformer*Head) and the
reference-spec §4.8 layout; the model's own state_dict must match them key for key, in order.
"""

from pathlib import Path

import pytest
import torch

from libs.core.config import load_config
from libs.modeling import build_model
from libs.modeling.blocks import BLOCKS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
THUMOS_WINATTN = CONFIGS / "thumos_internvideo2_6b_winattn.yaml"
C, C_IN, NUM_CLASSES, LEVELS = 512, 3200, 20, 6


def window_attn_block_keys(prefix: str, c: int) -> list[tuple[str, tuple]]:
    """ActionFormer TransformerBlock with LocalMaskedMHCA (no rel PE) and drop path > 0."""
    keys = [(f"{prefix}.{ln}.{p}", (1, c, 1)) for ln in ("ln1", "ln2") for p in ("weight", "bias")]
    for name in ("query", "key", "value"):
        keys += [
            (f"{prefix}.attn.{name}_conv.conv.weight", (c, 1, 3)),
            (f"{prefix}.attn.{name}_norm.weight", (1, c, 1)),
            (f"{prefix}.attn.{name}_norm.bias", (1, c, 1)),
        ]
    for name in ("key", "query", "value", "proj"):
        keys += [(f"{prefix}.attn.{name}.weight", (c, c, 1)), (f"{prefix}.attn.{name}.bias", (c,))]
    keys += [
        (f"{prefix}.mlp.0.weight", (4 * c, c, 1)),
        (f"{prefix}.mlp.0.bias", (4 * c,)),
        (f"{prefix}.mlp.3.weight", (c, 4 * c, 1)),
        (f"{prefix}.mlp.3.bias", (c,)),
        (f"{prefix}.drop_path_attn.scale", (1, c, 1)),
        (f"{prefix}.drop_path_mlp.scale", (1, c, 1)),
    ]
    return keys


def expected_thumos_keys() -> list[tuple[str, tuple]]:
    keys = [
        ("backbone.embd.0.conv.weight", (C, C_IN, 3)),
        ("backbone.embd.1.conv.weight", (C, C, 3)),
    ]
    for i in range(2):
        keys += [
            (f"backbone.embd_norm.{i}.weight", (1, C, 1)),
            (f"backbone.embd_norm.{i}.bias", (1, C, 1)),
        ]
    for i in range(2):
        keys += window_attn_block_keys(f"backbone.stem.{i}", C)
    for i in range(5):
        keys += window_attn_block_keys(f"backbone.branch.{i}", C)
    for level in range(LEVELS):
        keys += [
            (f"neck.fpn_norms.{level}.weight", (1, C, 1)),
            (f"neck.fpn_norms.{level}.bias", (1, C, 1)),
        ]
    for head in ("cls_head", "reg_head"):
        keys += [
            (f"{head}.head.0.conv.weight", (C, C, 3)),
            (f"{head}.head.1.conv.weight", (C, C, 3)),
        ]
        for i in range(2):
            keys += [(f"{head}.norm.{i}.weight", (1, C, 1)), (f"{head}.norm.{i}.bias", (1, C, 1))]
        if head == "cls_head":
            keys += [
                ("cls_head.cls_head.conv.weight", (NUM_CLASSES, C, 3)),
                ("cls_head.cls_head.conv.bias", (NUM_CLASSES,)),
            ]
    keys += [(f"reg_head.scale.{level}.scale", ()) for level in range(LEVELS)]
    keys += [
        ("reg_head.offset_head.conv.weight", (2, C, 3)),
        ("reg_head.offset_head.conv.bias", (2,)),
    ]
    return keys


@pytest.fixture(scope="module")
def thumos_model():
    cfg = load_config(str(THUMOS_WINATTN))
    return build_model(cfg.model, cfg.train, cfg.test)


# the one saved entry the published layout lacks: the detector's EMA loss normaliser (a float64
# buffer [] here, a plain attribute there); a published state_dict without it loads (below)
OUR_EXTRA_KEYS = {"loss_normalizer": ()}


def test_thumos_window_attn_keys_and_shapes(thumos_model):
    sd = thumos_model.state_dict()
    published = [(k, tuple(v.shape)) for k, v in sd.items() if k not in OUR_EXTRA_KEYS]
    assert published == expected_thumos_keys()
    assert {k: tuple(sd[k].shape) for k in OUR_EXTRA_KEYS} == OUR_EXTRA_KEYS


def test_no_persistent_buffers(thumos_model):
    saved = [k for k in thumos_model.state_dict() if k not in OUR_EXTRA_KEYS]
    assert saved == [n for n, _ in thumos_model.named_parameters()]
    assert thumos_model.point_generator.buffer(0).shape == (2304 * 6, 4)  # exists, just not saved


def test_published_layout_without_the_normaliser_loads(thumos_model):
    """A published state_dict (no loss_normalizer) loads strictly and keeps init_loss_norm."""
    from libs.engine.checkpoint import load_weights

    published = {k: v for k, v in thumos_model.state_dict().items() if k not in OUR_EXTRA_KEYS}
    cfg = load_config(str(THUMOS_WINATTN))
    fresh = build_model(cfg.model, cfg.train, cfg.test)
    fresh.load_state_dict(published)  # strict
    load_weights(fresh, published)
    assert float(fresh.loss_normalizer) == cfg.train.init_loss_norm
    ours = {**published, "loss_normalizer": torch.tensor(123.5, dtype=torch.float64)}
    load_weights(fresh, ours)
    assert float(fresh.loss_normalizer) == 123.5


def _count(model, prefix):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def test_thumos_parameter_counts(thumos_model):
    # per TransformerBlock (C = 512): LN 2·2C; depthwise q/k/v convs 3·3C; their LNs 3·2C;
    # q/k/v/proj 4·(C² + C); MLP C·4C + 4C + 4C·C + C; layer scales 2·C  = 3,161,088
    per_block = 4 * C + 9 * C + 6 * C + 4 * (C * C + C) + (8 * C * C + 5 * C) + 2 * C
    assert per_block == 3_161_088
    assert _count(thumos_model, "backbone.stem.0.") == per_block
    assert _count(thumos_model, "backbone.embd") == 5_703_680  # spec §4.8 (block-independent parts)
    assert _count(thumos_model, "neck.") == 6_144
    assert _count(thumos_model, "cls_head.") == 1_605_652
    assert _count(thumos_model, "reg_head.") == 1_577_992
    total = 5_703_680 + 7 * per_block + 6_144 + 1_605_652 + 1_577_992
    assert sum(p.numel() for p in thumos_model.parameters()) == total == 31_021_084


def test_thumos_init_follows_the_reference(thumos_model):
    sd = thumos_model.state_dict()
    assert torch.allclose(
        sd["cls_head.cls_head.conv.bias"], torch.full((NUM_CLASSES,), -4.59512), atol=1e-5
    )
    assert (sd["backbone.stem.0.attn.query.bias"] == 0).all() and (
        sd["backbone.branch.4.mlp.3.bias"] == 0
    ).all()
    assert torch.allclose(sd["backbone.stem.0.drop_path_attn.scale"], torch.full((1, C, 1), 1e-4))
    assert thumos_model.size_divisor == 576


def test_global_attention_and_rel_pe_names():
    """ANet's last level is global attention (MaskedMHCA): same names. rel_pe: [1, 1, nh, w]."""
    cfg = load_config(
        str(CONFIGS / "anet_internvideo2_6b_winattn.yaml"),
        ["model.embd_dim=16", "model.fpn_dim=16", "model.head_dim=16", "dataset.input_dim=8"],
    )
    model = build_model(cfg.model, cfg.train, cfg.test)
    local = [k.split(".", 3)[3] for k in model.state_dict() if k.startswith("backbone.branch.3.")]
    glob = [k.split(".", 3)[3] for k in model.state_dict() if k.startswith("backbone.branch.4.")]
    assert local == glob
    rel = BLOCKS.build("window_attn", dim=16, window_size=19, use_rel_pe=True)
    assert rel.state_dict()["attn.rel_pe"].shape == (1, 1, 4, 19)


EXPECTED_DIVISOR = {"thumos": 576, "anet": 96, "hacs": 384, "fineaction": 768}


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.glob("*_internvideo2_*.yaml")), ids=lambda p: p.stem
)
def test_every_paper_config_builds_with_the_reference_divisor(path):
    cfg = load_config(
        str(path),
        ["model.embd_dim=16", "model.fpn_dim=16", "model.head_dim=16", "dataset.input_dim=8"],
    )
    if cfg.model.block.type not in BLOCKS:
        pytest.skip(f"block '{cfg.model.block.type}' is not registered in libs.modeling.blocks")
    model = build_model(cfg.model, cfg.train, cfg.test)
    assert model.size_divisor == EXPECTED_DIVISOR[path.stem.split("_")[0]]

"""Weight-decay groups (reference-spec §6.3) and optimizer construction."""

import pytest
import torch
from torch import nn

from libs.core.config import OptCfg
from libs.engine.optim import SSM_PARAM_SUFFIXES, build_optimizer, param_groups, split_decay_names


# Stand-ins named like the real layers: the rules match class names, not imports.
class MaskedConv1D(nn.Module):
    def __init__(self, c_in, c_out, bias=True):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, padding=1, bias=bias)


class LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, dim, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1))


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))


class AffineDropPath(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, dim, 1), 1e-4))


class ToyMamba(nn.Module):
    """Parameter names of a bidirectional mamba mixer (ViM-style, with *_b copies)."""

    def __init__(self, d):
        super().__init__()
        self.in_proj = nn.Linear(d, 2 * d, bias=False)
        self.conv1d = nn.Conv1d(d, d, 4, groups=d, padding=3)
        self.x_proj = nn.Linear(d, 4, bias=False)
        self.dt_proj = nn.Linear(2, d)
        self.A_log = nn.Parameter(torch.zeros(d, 4))
        self.D = nn.Parameter(torch.ones(d))
        self.A_b_log = nn.Parameter(torch.zeros(d, 4))
        self.D_b = nn.Parameter(torch.ones(d))
        for p in (self.A_log, self.D, self.A_b_log, self.D_b):
            p._no_weight_decay = True  # mamba's tag, ignored by the reference
        self.out_proj = nn.Linear(d, d, bias=False)


class ToyDetector(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.embd = MaskedConv1D(4, d, bias=False)
        self.embd_norm = LayerNorm(d)
        self.mixer = ToyMamba(d)
        self.norm = nn.LayerNorm(d)
        self.gn = nn.GroupNorm(2, d)
        self.drop_path = AffineDropPath(d)
        self.scale = Scale()
        self.attn = nn.Module()
        self.attn.rel_pe = nn.Parameter(torch.zeros(1, 1, 5))
        self.cls_head = MaskedConv1D(d, 3)


DECAY = {
    "embd.conv.weight",
    "mixer.in_proj.weight",
    "mixer.conv1d.weight",
    "mixer.x_proj.weight",
    "mixer.dt_proj.weight",
    "mixer.out_proj.weight",
    "cls_head.conv.weight",
    "mixer.A_log",
    "mixer.D",
    "mixer.A_b_log",
    "mixer.D_b",
}
NO_DECAY = {
    "embd_norm.weight",
    "embd_norm.bias",
    "mixer.conv1d.bias",
    "mixer.dt_proj.bias",
    "norm.weight",
    "norm.bias",
    "gn.weight",
    "gn.bias",
    "drop_path.scale",
    "scale.scale",
    "attn.rel_pe",
    "cls_head.conv.bias",
}
SSM = {"mixer.A_log", "mixer.D", "mixer.A_b_log", "mixer.D_b"}


def test_reference_groups_decay_ssm_params():
    decay, no_decay = split_decay_names(ToyDetector(), decay_ssm_params=True)
    assert set(decay) == DECAY
    assert set(no_decay) == NO_DECAY


def test_no_weight_decay_tag_honoured_when_ssm_decay_off():
    decay, no_decay = split_decay_names(ToyDetector(), decay_ssm_params=False)
    assert set(decay) == DECAY - SSM
    assert set(no_decay) == NO_DECAY | SSM


def test_every_parameter_in_exactly_one_group():
    model = ToyDetector()
    groups = param_groups(model, 0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]


def test_unassigned_parameter_is_named():
    model = ToyDetector()
    model.mystery = nn.Parameter(torch.zeros(3))
    model.emb = nn.Embedding(4, 2)  # not in the reference rules either
    with pytest.raises(ValueError, match=r"'emb.weight'.*mystery"):
        split_decay_names(model)


def test_subclass_of_linear_is_decayed():
    class MyLinear(nn.Linear):
        pass

    decay, no_decay = split_decay_names(nn.Sequential(MyLinear(2, 2)))
    assert decay == ["0.weight"] and no_decay == ["0.bias"]


def test_build_adamw_and_sgd():
    model = ToyDetector()
    adamw = build_optimizer(model, OptCfg(type="AdamW", learning_rate=1e-4, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    group = adamw.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0]
    sgd = build_optimizer(model, OptCfg(type="SGD", learning_rate=0.1, momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[1]["momentum"] == 0.8


def _tiny_model(block: str):
    from libs.core.config import load_config
    from libs.modeling import build_model

    cfg = load_config(
        data={
            "dataset": {"input_dim": 8, "num_classes": 3, "max_seq_len": 64},
            "model": {
                "embd_dim": 16,
                "fpn_dim": 16,
                "head_dim": 16,
                "arch": [1, 1, 1],
                "n_mha_win_size": 5,
                "regression_range": [[0, 4], [4, 10000]],
                "block": {"type": block},
            },
        }
    )
    return build_model(cfg.model, cfg.train, cfg.test)


def _registered_blocks():
    from libs.modeling import BLOCKS

    try:  # registers vim / dbm even before libs/modeling/blocks/__init__.py imports it
        import libs.modeling.blocks.mamba  # noqa: F401
    except ImportError:
        pass

    return sorted(BLOCKS)


@pytest.mark.parametrize("block", _registered_blocks())
def test_real_detector_partitions_cleanly(block):
    model = _tiny_model(block)
    decay, no_decay = split_decay_names(model)  # raises if a parameter matches no rule
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    assert all(n.endswith(("weight",) + SSM_PARAM_SUFFIXES) for n in decay)


def test_thumos_dbm_groups_match_reference():
    """reference-spec §6.3: the published THUMOS DBM model has 57 decayed tensors (20,310,528
    values) and 67 non-decayed ones (30,236 values)."""
    from libs.core.config import load_config
    from libs.modeling import BLOCKS, build_model

    if "dbm" not in BLOCKS:
        pytest.skip("the dbm block is not registered")
    cfg = load_config("configs/thumos_internvideo2_6b_dbm.yaml")
    model = build_model(cfg.model, cfg.train, cfg.test)
    groups = param_groups(model, cfg.opt.weight_decay, decay_ssm_params=True)
    counts = [(len(g["params"]), sum(p.numel() for p in g["params"])) for g in groups]
    assert counts == [(57, 20_310_528), (67, 30_236)]

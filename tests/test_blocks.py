"""The TemporalBlock contract for every registered block, and window attention vs a naive reference.

A block whose valid outputs depend on the amount of padding (reference math, e.g. the
published bidirectional Mamba scans the padded tail, spec §5.6) says so with an attribute or
property `padding_invariant = False` and a `padding_invariant_reason`; its invariance test is
then a strict xfail.
"""

import pytest
import torch

from libs.modeling.blocks import BLOCKS
from libs.modeling.blocks.window_attn import LocalMaskedMHCA, MaskedMHCA, TransformerBlock
from libs.modeling.layers import AffineDropPath

DIM, T, WINDOW = 16, 64, 5
VARIANTS = [(name, {}) for name in sorted(BLOCKS)] + [
    ("window_attn", {"window_size": -1}),
    ("window_attn", {"use_rel_pe": True, "drop_path": 0.1, "n_head": 2}),
]
IDS = [
    name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "")
    for name, kw in VARIANTS
]
# used when a block does not declare `padding_invariant`: the published mixers with default args
_REFERENCE_LEAKS = {
    "dbm": "reference DBM: the backward scan starts in the padding (spec §5.6)",
    "vim": "reference ViM: the backward scan starts in the padding (spec §5.6)",
}


def padding_invariance(name: str, **kw) -> tuple[bool, str]:
    """(invariant?, reason) for a block built with these args."""
    block = make_block(name, **kw)
    default = name not in _REFERENCE_LEAKS
    reason = getattr(
        block,
        "padding_invariant_reason",
        _REFERENCE_LEAKS.get(name, "reference math sees the padding"),
    )
    return bool(getattr(block, "padding_invariant", default)), reason


def _invariance_params():
    params = []
    for (name, kw), id_ in zip(VARIANTS, IDS):
        invariant, reason = padding_invariance(name, **kw)
        marks = [] if invariant else [pytest.mark.xfail(strict=True, reason=reason)]
        params.append(pytest.param(name, kw, marks=marks, id=id_))
    return params


def make_block(name, stride=1, **kw):
    if BLOCKS[name].takes_window:
        kw.setdefault("window_size", WINDOW)
    return BLOCKS.build(name, dim=DIM, stride=stride, **kw)


def _mask(lengths, length=T):
    return (torch.arange(length)[None] < torch.tensor(lengths)[:, None])[:, None]  # [B, 1, T]


def _perturb(module, std=0.3):
    """Move every parameter off its init, so zero-init scales / biases cannot hide a leak."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_shape_stride_mask_and_zero_padding(name, kw, stride):
    block = _perturb(make_block(name, stride, **kw)).eval()
    mask = _mask([T, 37])
    x = torch.randn(2, DIM, T) * mask
    out, out_mask = block(x, mask)
    assert out.shape == (2, DIM, T // stride) and out_mask.shape == (2, 1, T // stride)
    assert out_mask.dtype == torch.bool and torch.equal(out_mask, mask[..., ::stride])
    assert (out * ~out_mask).abs().max() == 0, "outputs at padded positions must be exactly zero"
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_gradient_reaches_every_parameter(name, kw, stride):
    block = _perturb(make_block(name, stride, **kw)).eval()  # eval: no sample dropped by drop path
    mask = _mask([T, 45])
    x = (torch.randn(2, DIM, T) * mask).requires_grad_()
    out, _ = block(x, mask)
    out.pow(2).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name,kw", _invariance_params())
def test_padding_invariance(name, kw, stride):
    """Valid outputs must not depend on how much zero padding follows (odd length: boundary)."""
    block = _perturb(make_block(name, stride, **kw)).eval()
    valid = 27
    x = torch.randn(1, DIM, valid)
    outs = []
    for length in (32, T):
        padded = torch.nn.functional.pad(x, (0, length - valid))
        out, out_mask = block(padded, _mask([valid], length))
        n_valid = int(out_mask.sum())
        outs.append(out[..., :n_valid])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# window attention specifics


def naive_band_attention(attn: LocalMaskedMHCA, q, k, v, mask):
    """Full T×T attention with a |i − j| ≤ w // 2 band mask: the slow reference of `_attend`."""
    Tq, h = q.shape[2], attn.window_overlap
    offset = torch.arange(Tq)[None, :] - torch.arange(Tq)[:, None]  # [T, T], key − query
    scores = (q * attn.scale) @ k.transpose(-2, -1)  # [B, nh, T, T]
    if attn.use_rel_pe:
        bias = attn.rel_pe[0, 0][:, (offset + h).clamp(0, 2 * h)]  # [nh, T, T]
        scores = scores + bias[None]
    allowed = (offset.abs() <= h)[None, None] & mask[:, :, None, :]  # [B, 1, T, T]
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows without a key: padded queries
    probs = probs * mask[:, :, :, None]  # padded query rows are zero
    return probs @ v


@pytest.mark.parametrize(
    "window,length,lengths,rel_pe",
    [
        (5, 24, [24, 17, 1], False),
        (19, 72, [72, 40, 9], True),
        (7, 20, [20, 13, 2], True),
        (9, 8, [8, 5, 3], False),
    ],
)
def test_local_attention_matches_naive_band_attention(window, length, lengths, rel_pe):
    attn = _perturb(LocalMaskedMHCA(DIM, 4, window, use_rel_pe=rel_pe)).eval()
    mask = _mask(lengths, length)
    x = torch.randn(len(lengths), DIM, length) * mask
    q, k, v, out_mask = attn._qkv(x, mask)
    torch.testing.assert_close(
        attn._attend(q, k, v, out_mask), naive_band_attention(attn, q, k, v, out_mask)
    )
    # gradients agree too
    q2, k2, v2 = (t.detach().requires_grad_() for t in (q, k, v))
    q3, k3, v3 = (t.detach().requires_grad_() for t in (q, k, v))
    g = torch.randn_like(q)
    (attn._attend(q2, k2, v2, out_mask) * g).sum().backward()
    (naive_band_attention(attn, q3, k3, v3, out_mask) * g).sum().backward()
    for a, b in ((q2, q3), (k2, k3), (v2, v3)):
        torch.testing.assert_close(a.grad, b.grad)


def test_window_wider_than_sequence_equals_global_attention():
    local = _perturb(LocalMaskedMHCA(DIM, 4, window_size=41, stride=2)).eval()
    glob = MaskedMHCA(DIM, 4, stride=2).eval()
    glob.load_state_dict(local.state_dict())
    mask = _mask([40, 23], 40)
    x = torch.randn(2, DIM, 40) * mask
    torch.testing.assert_close(local(x, mask)[0], glob(x, mask)[0])


def test_window_attn_construction():
    assert TransformerBlock.takes_window
    assert make_block("window_attn", window_size=19).size_divisor() == 18
    assert make_block("window_attn", window_size=-1).size_divisor() == 1
    assert isinstance(make_block("window_attn", window_size=-1).attn, MaskedMHCA)
    assert isinstance(make_block("window_attn", drop_path=0.1).drop_path_mlp, AffineDropPath)
    assert isinstance(make_block("window_attn").drop_path_attn, torch.nn.Identity)
    with pytest.raises(TypeError):  # the window comes from the backbone, never a silent default
        BLOCKS.build("window_attn", dim=DIM)
    with pytest.raises(ValueError, match="odd"):
        make_block("window_attn", window_size=4, use_rel_pe=True)
    with pytest.raises(ValueError, match="stride"):
        make_block("window_attn", stride=3)


def test_conv_block_is_a_resnet_basic_block():
    block = make_block("conv", stride=2)
    assert block.conv1.conv.weight.shape == (
        2 * DIM,
        DIM,
        3,
    ) and block.downsample.conv.weight.shape == (DIM, DIM, 1)
    assert make_block("conv").downsample is None
    with pytest.raises(ValueError, match="drop path"):
        make_block("conv", drop_path=0.1)

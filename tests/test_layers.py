"""Small layers: masking, normalisation, drop path, pooling, position table (hand-computed)."""

import math

import pytest
import torch

from libs.modeling.layers import (
    AffineDropPath,
    LayerNorm,
    MaskedConv1D,
    MaxPooler,
    Scale,
    drop_path,
    get_sinusoid_encoding,
    prior_bias,
)


def _mask(lengths, T):
    return (torch.arange(T)[None] < torch.tensor(lengths)[:, None])[:, None]  # [B, 1, T]


def test_masked_conv_zeroes_padding_and_downsamples_mask():
    conv = MaskedConv1D(3, 5, 3, stride=2, padding=1)
    mask = _mask([7, 4], 8)
    out, out_mask = conv(torch.randn(2, 3, 8), mask)
    assert out.shape == (2, 5, 4) and out_mask.dtype == torch.bool
    assert torch.equal(out_mask, mask[..., ::2])  # out_mask[i] = mask[2i]
    assert (out[~out_mask.expand_as(out)] == 0).all()
    assert (conv.conv.bias == 0).all()


def test_masked_conv_rejects_bad_shapes():
    with pytest.raises(ValueError, match="odd kernel"):
        MaskedConv1D(3, 3, 3, padding=0)
    with pytest.raises(ValueError, match="divisible"):
        MaskedConv1D(3, 3, 3, stride=2, padding=1)(torch.randn(1, 3, 7), _mask([7], 7))


def test_layer_norm_normalises_channels():
    x = torch.randn(2, 6, 5)
    ln = LayerNorm(6)
    with torch.no_grad():
        ln.weight.fill_(2.0)
        ln.bias.fill_(0.5)
    expected = (
        torch.nn.functional.layer_norm(x.transpose(1, 2), (6,), eps=1e-5).transpose(1, 2) * 2.0
        + 0.5
    )
    torch.testing.assert_close(ln(x), expected)
    assert ln.weight.shape == (1, 6, 1)
    # a zero column maps to the bias: the reason padded positions are not zero after an embedding LN
    assert torch.allclose(ln(torch.zeros(1, 6, 1)), torch.full((1, 6, 1), 0.5))


def test_scale_and_affine_drop_path_init():
    assert Scale()(torch.tensor(3.0)).item() == 3.0 and Scale().scale.shape == ()
    adp = AffineDropPath(4, drop_prob=0.5)
    assert adp.scale.shape == (1, 4, 1) and torch.allclose(adp.scale, torch.full((1, 4, 1), 1e-4))
    adp.eval()
    torch.testing.assert_close(adp(torch.ones(2, 4, 3)), torch.full((2, 4, 3), 1e-4))


def test_drop_path_keeps_or_drops_whole_samples():
    x = torch.ones(64, 3, 2)
    assert drop_path(x, 0.3, training=False) is x and drop_path(x, 0.0, training=True) is x
    out = drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64


def test_max_pooler_masks_like_the_reference():
    x = torch.tensor([[[1.0, 5.0, 2.0, 7.0, 3.0, 0.0]]])
    out, out_mask = MaxPooler()(x, _mask([5], 6))
    assert torch.equal(out_mask, torch.tensor([[[True, True, True]]]))
    # windows (pad, 1, 5) (5, 2, 7) (7, 3, 0): the last valid window also sees the padded slot
    assert torch.equal(out, torch.tensor([[[5.0, 7.0, 7.0]]]))
    out, out_mask = MaxPooler()(x, _mask([4], 6))
    assert torch.equal(out_mask[0, 0], torch.tensor([True, True, False])) and out[0, 0, 2] == 0


def test_sinusoid_encoding_values():
    d, n = 6, 4
    pe = get_sinusoid_encoding(n, d)
    assert pe.shape == (1, d, n) and pe.dtype == torch.float32
    assert torch.equal(pe[0, 0::2, 0], torch.zeros(3)) and torch.equal(
        pe[0, 1::2, 0], torch.ones(3)
    )
    assert math.isclose(pe[0, 0, 1].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(pe[0, 3, 2].item(), math.cos(2.0 / 10000 ** (2 / 6)), rel_tol=1e-6)


def test_prior_bias():
    assert math.isclose(prior_bias(0.01), -4.59512, abs_tol=1e-5)
    assert math.isclose(prior_bias(1e-6), -13.8155, abs_tol=1e-4)

"""MaskMambaBlock ("vim" / "dbm"): contract, state_dict, composition, padding modes, stride 2."""
import pytest
import torch
from torch import nn

import libs.modeling.blocks.mamba  # noqa: F401  (registers "vim" and "dbm")
from libs.modeling.blocks.base import BLOCKS, TemporalBlock
from libs.modeling.layers import AffineDropPath
from libs.modeling.mixers import BiMambaV2, DecomposedBiMamba

KINDS = ["dbm", "vim"]
CFG_ARGS = {  # what the paper configs pass
    "dbm": dict(d_state=16, d_conv=4, expand=1, drop_path=0.3, padding="reference"),
    "vim": dict(d_state=16, d_conv=4, expand=2, drop_path=0.3, padding="reference"),
}


def _block(kind, dim=8, stride=1, **kw):
    return BLOCKS.build(kind, dim=dim, stride=stride, **kw).eval()


def _trained_like(block):
    """Move every parameter off its init (LayerNorm bias != 0, layer scale O(1)): the leak shows."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if isinstance(block.drop_path, AffineDropPath):
            block.drop_path.scale.fill_(0.5)
    return block


def _mask(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]  # [B, 1, T]


def _backbone_style_reinit(module):
    if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
        if not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------
# registration and parameters


def test_registered_with_defaults():
    for kind, mixer, expand in [("dbm", DecomposedBiMamba, 1), ("vim", BiMambaV2, 2)]:
        assert issubclass(BLOCKS[kind], TemporalBlock)
        b = BLOCKS.build(kind, dim=16)
        assert isinstance(b.mamba, mixer) and b.mamba.expand == expand and b.mamba.d_conv == 4
        assert b.mamba.d_state == 16 and b.padding == "reference" and b.stride == 1
        assert isinstance(b.norm, nn.LayerNorm) and b.norm.eps == 1e-5
        assert isinstance(b.drop_path, AffineDropPath) and b.drop_path.drop_prob == 0.3
        assert torch.all(b.drop_path.scale == 1e-4) and b.drop_path.scale.shape == (1, 16, 1)


DBM_KEYS = [
    ("mamba.A_log", (512, 16)), ("mamba.D", (512,)), ("mamba.in_proj.weight", (2048, 512)),
    ("mamba.conv1d.weight", (512, 1, 4)), ("mamba.conv1d.bias", (512,)),
    ("mamba.x_proj.weight", (64, 512)), ("mamba.dt_proj.weight", (512, 32)),
    ("mamba.dt_proj.bias", (512,)), ("mamba.out_proj.weight", (512, 1024)),
    ("norm.weight", (512,)), ("norm.bias", (512,)), ("drop_path.scale", (1, 512, 1)),
]


@pytest.mark.parametrize("kind, count", [("dbm", 1_635_328), ("vim", 1_818_112)])
def test_block_parameter_count_and_keys_at_512(kind, count):
    b = BLOCKS.build(kind, dim=512, stride=2, **CFG_ARGS[kind])
    assert sum(p.numel() for p in b.parameters()) == count
    keys = [(k, tuple(v.shape)) for k, v in b.state_dict().items()]
    if kind == "dbm":
        assert keys == DBM_KEYS
    else:
        assert len(keys) == 16 + 3 and keys[-3:] == DBM_KEYS[-3:]
        assert [k for k, _ in keys[:4]] == ["mamba.A_log", "mamba.D", "mamba.A_b_log", "mamba.D_b"]


def test_zero_drop_path_is_identity_without_scale():
    b = BLOCKS.build("dbm", dim=8, drop_path=0.0)
    assert isinstance(b.drop_path, nn.Identity) and "drop_path.scale" not in b.state_dict()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="padding"):
        BLOCKS.build("dbm", dim=8, padding="full")
    with pytest.raises(ValueError, match="stride"):
        BLOCKS.build("vim", dim=8, stride=3)


# --------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("kind", KINDS)
def test_reference_forward_composition(kind):
    b = _trained_like(_block(kind))
    x, mask = torch.randn(2, 8, 10), _mask([10, 6], 10)
    out, out_mask = b(x, mask)
    y = b.mamba(b.norm(x.transpose(1, 2))).transpose(1, 2) * mask  # LN over channels → mixer → ·mask
    torch.testing.assert_close(out, x + b.drop_path.scale * y)  # residual NOT masked (eval: no drop)
    assert torch.equal(out_mask, mask)
    assert torch.equal(out[1, :, 6:], x[1, :, 6:])  # padded positions carry the residual stream


@pytest.mark.parametrize("kind", KINDS)
def test_exact_zeroes_padded_positions(kind):
    b = _trained_like(_block(kind, padding="exact"))
    x, mask = torch.randn(2, 8, 10), _mask([10, 6], 10)
    out, _ = b(x, mask)
    assert torch.count_nonzero(out[1, :, 6:]) == 0
    ref = _block(kind, padding="reference")
    ref.load_state_dict(b.state_dict())
    torch.testing.assert_close(out[0], ref(x, mask)[0][0])  # an unpadded sample is unchanged


@pytest.mark.parametrize("kind", KINDS)
def test_stride2_downsamples_x_and_mask(kind):
    b = _trained_like(_block(kind, stride=2))
    x, mask = torch.randn(2, 8, 12), _mask([12, 7], 12)
    out, out_mask = b(x, mask)
    assert out.shape == (2, 8, 6) and out_mask.dtype == torch.bool
    assert torch.equal(out_mask, mask[:, :, ::2])  # nearest downsample: out_mask[i] = mask[2i]
    full = _block(kind)  # the same weights without pooling
    full.load_state_dict(b.state_dict())
    pre, _ = full(x, mask)
    pooled = nn.functional.max_pool1d(pre, 3, 2, 1) * out_mask
    torch.testing.assert_close(out, pooled)  # pooling happens after the residual sum
    assert b.size_divisor() == 1  # evenness of T is implied by the backbone's level strides
    with pytest.raises(ValueError, match="divisible"):
        b(torch.randn(1, 8, 11), torch.ones(1, 1, 11, dtype=torch.bool))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("padding", ["reference", "exact"])
def test_gradients_reach_every_parameter(kind, padding):
    b = _block(kind, stride=2, padding=padding).train()
    b.drop_path.drop_prob = 0.0  # keep every sample: with B=2, p=0.3 could drop both
    x = torch.randn(2, 8, 8, requires_grad=True)
    out, _ = b(x, _mask([8, 5], 8))
    out.square().sum().backward()
    for name, p in b.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_exact_rejects_non_prefix_masks():
    b = _block("dbm", padding="exact")
    mask = torch.ones(1, 1, 6, dtype=torch.bool)
    mask[0, 0, 2] = False
    with pytest.raises(ValueError, match="prefix"):
        b(torch.randn(1, 8, 6), mask)


# --------------------------------------------------------------------------------------------
# padding invariance


def _run_padded(blocks, x_valid, lengths, T, pad_value):
    """Run a stack of blocks on the videos padded to T (padded content = pad_value) -> valid outputs."""
    B, C = len(lengths), x_valid.shape[1]
    x = torch.full((B, C, T), pad_value, dtype=x_valid.dtype)
    x[:, :, : x_valid.shape[2]] = x_valid
    mask = _mask(lengths, T)
    x = x * mask + pad_value * ~mask  # the padded tail holds pad_value, as after the embedding
    for blk in blocks:
        x, mask = blk(x, mask)
    return [x[i, :, : int(mask[i].sum())] for i in range(B)]


# float64 shows that no padding reaches a valid step; in float32 the GEMMs' blocking depends on
# the padded length, so results may differ by rounding only (a few ulp).
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("kind", KINDS)
def test_exact_is_invariant_to_extra_padding(kind, dtype, tol):
    torch.manual_seed(1)
    blocks = [_trained_like(_block(kind, stride=s, padding="exact")).to(dtype) for s in (1, 2, 2)]
    assert all(b.padding_invariant for b in blocks)
    lengths = [16, 11]
    x_valid = torch.randn(2, 8, 16, dtype=dtype)
    short = _run_padded(blocks, x_valid, lengths, 16, pad_value=0.7)
    long = _run_padded(blocks, x_valid, lengths, 32, pad_value=-1.3)
    for a, b in zip(short, long):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_leaks_padding_once_trained(kind):
    """The published behaviour (reference-spec §5.6): not invariant once the LN bias is non-zero."""
    torch.manual_seed(1)
    blocks = [_trained_like(_block(kind, padding="reference")) for _ in range(2)]
    assert all(b.norm.bias.abs().max() > 0 for b in blocks)
    assert not any(b.padding_invariant for b in blocks)
    lengths = [16, 11]
    x_valid = torch.randn(2, 8, 16)
    short = _run_padded(blocks, x_valid, lengths, 16, pad_value=0.0)
    long = _run_padded(blocks, x_valid, lengths, 32, pad_value=0.0)
    assert not torch.allclose(short[0], long[0], atol=1e-6)  # even an unpadded-length video leaks
    assert (short[1] - long[1]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_reference_has_no_leak_at_init(kind):
    """At init (LN bias 0, conv biases zeroed by the backbone) zero padding stays zero in the scan."""
    blocks = [_block(kind, padding="reference") for _ in range(2)]
    for b in blocks:
        b.apply(_backbone_style_reinit)
        with torch.no_grad():
            b.drop_path.scale.fill_(0.5)
    lengths, x_valid = [16, 11], torch.randn(2, 8, 16)
    short = _run_padded(blocks, x_valid, lengths, 16, pad_value=0.0)
    long = _run_padded(blocks, x_valid, lengths, 32, pad_value=0.0)
    for a, b in zip(short, long):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

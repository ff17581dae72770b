"""ViM (bimamba v2) and DBM mixers: names/shapes, a loop re-derivation of the math, inits, reversal."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from libs.modeling.mixers import BiMambaV2, DecomposedBiMamba, reverse_index, reverse_time

# --------------------------------------------------------------------------------------------
# the published math, re-derived with explicit loops (float64, one sample at a time)


def _conv_silu_loop(x, w, b):
    """Causal depthwise conv + SiLU. x [E, L], w [E, W], b [E] -> [E, L]."""
    E, L = x.shape
    W = w.shape[1]
    out = torch.zeros(E, L, dtype=x.dtype)
    for t in range(L):
        acc = b.clone()
        for k in range(W):
            s = t - (W - 1) + k  # tap k reads x[t - (W-1) + k]; earlier than 0 is zero
            if s >= 0:
                acc = acc + w[:, k] * x[:, s]
        out[:, t] = acc
    return out * torch.sigmoid(out)


def _direction_loop(x, z, conv_w, conv_b, w_x, w_dt, b_dt, a_log, d_skip, R, N):
    """One Mamba direction. x, z [E, L] -> [E, L]: conv → x_proj → dt_proj → scan → +D·u → ·SiLU(z)."""
    u = _conv_silu_loop(x, conv_w, conv_b)
    A = -torch.exp(a_log)  # [E, N]
    E, L = u.shape
    h = torch.zeros(E, N, dtype=x.dtype)
    ys = []
    for t in range(L):
        dbl = w_x @ u[:, t]  # [R + 2N]
        delta = F.softplus(w_dt @ dbl[:R] + b_dt)  # [E]
        b_t, c_t = dbl[R:R + N], dbl[R + N:]
        h = torch.exp(delta[:, None] * A) * h + delta[:, None] * b_t[None, :] * u[:, t, None]
        y = h @ c_t + d_skip * u[:, t]
        ys.append(y * z[:, t] * torch.sigmoid(z[:, t]))
    return torch.stack(ys, dim=1)


def _params64(m):
    return {k: v.detach().double() for k, v in m.named_parameters()}


def _dbm_loop(m, h):
    """DBM on one sample h [L, d] -> [L, d]."""
    p, E, R, N = _params64(m), m.d_inner, m.dt_rank, m.d_state
    xz = p["in_proj.weight"] @ h.double().T  # [4E, L]
    x_f, z_f, x_b, z_b = xz[:E], xz[E:2 * E], xz[2 * E:3 * E], xz[3 * E:]
    args = (p["conv1d.weight"][:, 0], p["conv1d.bias"], p["x_proj.weight"], p["dt_proj.weight"],
            p["dt_proj.bias"], p["A_log"], p["D"], R, N)
    y_f = _direction_loop(x_f, z_f, *args)
    y_b = _direction_loop(x_b.flip(1), z_b.flip(1), *args).flip(1)  # shared parameters
    return (p["out_proj.weight"] @ torch.cat([y_f, y_b], dim=0)).T  # concat, 2E -> d


def _vim_loop(m, h):
    """ViM v2 on one sample h [L, d] -> [L, d]."""
    p, E, R, N = _params64(m), m.d_inner, m.dt_rank, m.d_state
    xz = p["in_proj.weight"] @ h.double().T  # [2E, L]
    x, z = xz[:E], xz[E:]
    y_f = _direction_loop(x, z, p["conv1d.weight"][:, 0], p["conv1d.bias"], p["x_proj.weight"],
                          p["dt_proj.weight"], p["dt_proj.bias"], p["A_log"], p["D"], R, N)
    y_b = _direction_loop(x.flip(1), z.flip(1), p["conv1d_b.weight"][:, 0], p["conv1d_b.bias"],
                          p["x_proj_b.weight"], p["dt_proj_b.weight"], p["dt_proj_b.bias"],
                          p["A_b_log"], p["D_b"], R, N).flip(1)
    return (p["out_proj.weight"] @ (y_f + y_b)).T  # sum, E -> d


MIXERS = {"dbm": (DecomposedBiMamba, _dbm_loop), "vim": (BiMambaV2, _vim_loop)}


def _perturbed(kind, d=8, **kw):
    """A tiny mixer whose every parameter is moved away from its structured init."""
    m = MIXERS[kind][0](d, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


# --------------------------------------------------------------------------------------------
# names, shapes, counts (reference-spec §4.8)

DBM_512 = [
    ("A_log", (512, 16)), ("D", (512,)), ("in_proj.weight", (2048, 512)),
    ("conv1d.weight", (512, 1, 4)), ("conv1d.bias", (512,)), ("x_proj.weight", (64, 512)),
    ("dt_proj.weight", (512, 32)), ("dt_proj.bias", (512,)), ("out_proj.weight", (512, 1024)),
]
VIM_512 = [
    ("A_log", (1024, 16)), ("D", (1024,)), ("A_b_log", (1024, 16)), ("D_b", (1024,)),
    ("in_proj.weight", (2048, 512)), ("conv1d.weight", (1024, 1, 4)), ("conv1d.bias", (1024,)),
    ("x_proj.weight", (64, 1024)), ("dt_proj.weight", (1024, 32)), ("dt_proj.bias", (1024,)),
    ("conv1d_b.weight", (1024, 1, 4)), ("conv1d_b.bias", (1024,)), ("x_proj_b.weight", (64, 1024)),
    ("dt_proj_b.weight", (1024, 32)), ("dt_proj_b.bias", (1024,)), ("out_proj.weight", (512, 1024)),
]


@pytest.mark.parametrize("kind, expected, count", [("dbm", DBM_512, 1_633_792), ("vim", VIM_512, 1_816_576)])
def test_state_dict_names_shapes_order_and_count(kind, expected, count):
    m = MIXERS[kind][0](512)
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == expected
    assert sum(p.numel() for p in m.parameters()) == count
    assert m.in_proj.bias is None and m.x_proj.bias is None and m.out_proj.bias is None


def test_anet_sized_dbm_shapes():
    m = DecomposedBiMamba(256)  # ANet/HACS: d = 256, R = 16
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["in_proj.weight"] == (1024, 256) and shapes["x_proj.weight"] == (48, 256)
    assert shapes["dt_proj.weight"] == (256, 16) and shapes["out_proj.weight"] == (256, 512)


def test_published_checkpoint_keys_load_unchanged():
    src = DecomposedBiMamba(32)
    prefixed = {f"module.backbone.stem.0.mamba.{k}": v for k, v in src.state_dict().items()}
    dst = DecomposedBiMamba(32)
    dst.load_state_dict({k.split("mamba.", 1)[1]: v for k, v in prefixed.items()}, strict=True)
    assert torch.equal(dst.in_proj.weight, src.in_proj.weight)


# --------------------------------------------------------------------------------------------
# forward = the loop re-derivation


@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_forward_matches_loop_rederivation(kind):
    m = _perturbed(kind)
    h = torch.randn(2, 7, 8)
    out = m(h)
    assert out.shape == (2, 7, 8)
    for b in range(2):
        ref = MIXERS[kind][1](m, h[b])
        torch.testing.assert_close(out[b].double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_expand_and_dt_rank_follow_d_model(kind):
    m = _perturbed(kind, d=20, expand=3, d_state=4)
    assert m.dt_rank == math.ceil(20 / 16) == 2 and m.d_inner == 60
    h = torch.randn(1, 5, 20)
    torch.testing.assert_close(m(h)[0].double(), MIXERS[kind][1](m, h[0]), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# per-sample reversal ("exact" padding)


def test_reverse_index_reverses_prefix_and_is_an_involution():
    idx = reverse_index(torch.tensor([3, 5, 0]), 5)
    assert idx.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]
    x = torch.randn(3, 2, 5)
    assert torch.equal(reverse_time(reverse_time(x, idx), idx), x)
    assert torch.equal(reverse_time(x, None), x.flip(-1))


# float64: exact up to round-off; float32: GEMM blocking depends on L, so a few ulp may differ
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_lengths_make_each_sample_equal_to_its_unpadded_run(kind, dtype, tol):
    m = _perturbed(kind).to(dtype)
    lengths = torch.tensor([9, 5])
    h = torch.randn(2, 9, 8, dtype=dtype)
    h[1, 5:] = 3.0 * torch.randn(4, 8, dtype=dtype)  # arbitrary content in the padded tail
    out = m(h, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = m(h[b:b + 1, :n])
        torch.testing.assert_close(out[b:b + 1, :n], alone, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_full_flip_sees_the_padded_tail(kind):
    m = _perturbed(kind)
    h = torch.randn(1, 9, 8)
    short = m(h[:, :5])
    padded = m(torch.cat([h[:, :5], torch.randn(1, 4, 8)], dim=1))[:, :5]
    assert (padded - short).abs().max() > 1e-4  # the published behaviour: padding leaks backwards


# --------------------------------------------------------------------------------------------
# initialisation


@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_ssm_inits(kind):
    m = MIXERS[kind][0](64)
    E, R = m.d_inner, m.dt_rank
    names = ["A_log", "D"] + (["A_b_log", "D_b"] if kind == "vim" else [])
    for name in names:
        p = getattr(m, name)
        assert p.dtype == torch.float32 and getattr(p, "_no_weight_decay", False) is True
    for a_log in [m.A_log] + ([m.A_b_log] if kind == "vim" else []):
        torch.testing.assert_close(-torch.exp(a_log), -torch.arange(1.0, 17.0).expand(E, 16))
    for d_skip in [m.D] + ([m.D_b] if kind == "vim" else []):
        assert torch.equal(d_skip, torch.ones(E))
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert m.dt_proj.weight.abs().max() <= R ** -0.5
    assert getattr(m.dt_proj.bias, "_no_reinit", False) is True


def test_dt_bias_is_log_uniform_with_floor():
    m = DecomposedBiMamba(16, expand=256)  # E = 4096 samples of the dt init
    log_dt = torch.log(F.softplus(m.dt_proj.bias.detach().double()))
    lo, hi = math.log(1e-3), math.log(1e-1)
    assert abs(log_dt.mean().item() - (lo + hi) / 2) < 0.1  # mean of U(lo, hi)
    assert abs((log_dt < math.log(1e-2)).double().mean().item() - 0.5) < 0.05  # one decade each side
    floored = DecomposedBiMamba(16, dt_min=1e-6, dt_max=1e-5)  # every draw is below the 1e-4 floor
    torch.testing.assert_close(F.softplus(floored.dt_proj.bias.detach().double()),
                               torch.full((16,), 1e-4, dtype=torch.float64), rtol=1e-4, atol=0)


def _backbone_style_reinit(module):
    """The reference MambaBackbone init: zero every Linear/Conv1d bias not tagged `_no_reinit`."""
    if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
        if not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)


def test_vim_backward_dt_quirk_survives_backbone_reinit():
    m = BiMambaV2(64)
    dt_bias = m.dt_proj.bias.detach().clone()
    assert not getattr(m.dt_proj_b.bias, "_no_reinit", False)
    assert m.dt_proj_b.weight.abs().max() <= m.dt_rank ** -0.5  # default Linear init: U(±1/sqrt(R))
    m.apply(_backbone_style_reinit)
    assert torch.equal(m.dt_proj.bias, dt_bias)  # forward dt bias kept
    assert torch.count_nonzero(m.dt_proj_b.bias) == 0  # backward dt bias zeroed (Δ ≈ 0.69)
    assert torch.count_nonzero(m.conv1d.bias) == 0 and torch.count_nonzero(m.conv1d_b.bias) == 0


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = BiMambaV2(16)
    torch.manual_seed(3)
    b = BiMambaV2(16)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


# --------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("kind", ["dbm", "vim"])
def test_gradcheck_through_projections_and_reversal(kind):
    """float64 gradcheck of the input and the batched-projection weights, with per-sample reversal."""
    from torch.func import functional_call

    m = MIXERS[kind][0](4, d_state=2).double()
    names = ["in_proj.weight", "x_proj.weight", "dt_proj.weight", "out_proj.weight"]
    params = dict(m.named_parameters())
    h = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)

    def f(h, *weights):
        return functional_call(m, dict(zip(names, weights)), (h,), {"lengths": torch.tensor([4, 3])})

    inputs = (h, *[params[n].detach().requires_grad_() for n in names])
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


@pytest.mark.parametrize("kind", ["dbm", "vim"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradients_reach_every_parameter(kind, with_lengths):
    m = _perturbed(kind)
    h = torch.randn(2, 6, 8, requires_grad=True)
    lengths = torch.tensor([6, 4]) if with_lengths else None
    m(h, lengths=lengths).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert h.grad.abs().sum() > 0

"""Mixed precision: bf16 autocast on CPU tracks fp32 training; SSM parameters stay fp32.

A tiny DBM (bidirectional Mamba) detector trains 200 steps on 2 fixed batches, once in fp32 and
once under bf16 autocast, from the same initial weights; the loss curves must stay close (bf16
keeps 8 mantissa bits, so the tolerance is a few percent of the loss, far below its decrease).
"""

import copy

import pytest
import torch

from libs.core.config import load_config
from libs.datasets import build_dataset, build_loader
from libs.engine.amp import amp_dtype, autocast, make_grad_scaler
from libs.engine.ema import ModelEma
from libs.engine.optim import build_optimizer
from libs.engine.scheduler import WarmupScheduler
from libs.engine.train_step import TrainState, train_step
from libs.modeling import build_model
from tests.test_resume_exact import make_tiny_config, one_thread

STEPS = 200  # the issue asks for the loss curve over 200 steps


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = make_tiny_config(tmp_path_factory.mktemp("amp"), num_train=4)
    block = "{type: dbm, args: {d_state: 4, d_conv: 4, expand: 1, drop_path: 0.0}}"
    cfg = load_config(str(path), [f"model.block={block}", "dataset.crop_ratio=null"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.train, cfg.test)
    loader = build_loader(
        build_dataset(cfg.dataset, "train", is_training=True),
        batch_size=2,
        num_workers=0,
        is_training=True,
        max_seq_len=cfg.dataset.max_seq_len,
        size_divisor=model.size_divisor,
    )
    return cfg, model, list(loader)


def _curve(cfg, model, batches, amp: str) -> tuple[list[float], torch.nn.Module]:
    model = copy.deepcopy(model)
    optimizer = build_optimizer(model, cfg.opt)
    state = TrainState(model, ModelEma(model), optimizer, WarmupScheduler(optimizer, 0, STEPS))
    state.amp = amp
    state.scaler = make_grad_scaler(amp, torch.device("cpu"))
    model.train()
    with one_thread():
        losses = [
            train_step(state, batches[i % len(batches)], 1.0, 0, i)["final_loss"].item()
            for i in range(STEPS)
        ]
    return losses, model


def test_bf16_loss_curve_tracks_fp32(setup):
    cfg, model, batches = setup
    fp32, _ = _curve(cfg, model, batches, "none")
    bf16, trained = _curve(cfg, model, batches, "bf16")
    assert fp32[-1] < 0.8 * fp32[0]  # it learns, so the comparison means something
    # bf16 rounding changes every update, so single steps of the two curves jitter apart once the
    # loss is small; compare the curves averaged over windows of 20 steps: the gap must stay
    # within 3% of the initial loss, far below the ~95% the loss decreases
    window = 20
    for start in range(0, STEPS, window):
        a = sum(fp32[start : start + window]) / window
        b = sum(bf16[start : start + window]) / window
        assert abs(b - a) <= 0.03 * fp32[0], f"steps {start}-{start + window}: fp32 {a:.4f} bf16 {b:.4f}"
    ssm = {n: p for n, p in trained.named_parameters() if n.endswith(("A_log", "A_b_log", "D"))}
    assert ssm, "the DBM block should have SSM parameters"
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in trained.parameters())


def test_autocast_really_runs_in_bf16(setup):
    cfg, model, batches = setup
    model = copy.deepcopy(model).train()
    seen = []
    conv = next(m for m in model.cls_head.modules() if isinstance(m, torch.nn.Conv1d))
    hook = conv.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    with autocast("bf16", torch.device("cpu")):
        model(batches[0])
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # one call per pyramid level


def test_amp_modes():
    assert amp_dtype("none") is None and amp_dtype("fp16") is torch.float16
    assert make_grad_scaler("bf16", torch.device("cpu")) is None
    assert make_grad_scaler("fp16", torch.device("cpu")) is not None
    with pytest.raises(ValueError, match="opt.amp must be one of"):
        amp_dtype("fp8")

"""Per-iteration LR schedule values (reference-spec §6.4)."""

import math

import pytest
import torch

from libs.core.config import OptCfg
from libs.engine.scheduler import WarmupScheduler, build_scheduler, total_epochs

BASE = 1e-3
ETA_MIN = 1e-8


def _optimizer(lr=BASE):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs_used(scheduler, steps):
    """LR applied at iterations 0..steps-1 (read before each scheduler.step, as the loop does)."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _chained_reference(w, m, steps):
    """The reference's chained updates, written independently of the closed form."""
    lrs = []
    for k in range(steps):
        if k == 0:
            lr = 0.0
        elif k < w:
            lr = lrs[-1] + BASE / (w - 1)
        elif k == w:
            lr = BASE
        else:
            ratio = (1 + math.cos(math.pi * (k - w) / (m - w))) / (
                1 + math.cos(math.pi * (k - w - 1) / (m - w))
            )
            lr = ratio * (lrs[-1] - ETA_MIN) + ETA_MIN
        lrs.append(lr)
    return lrs


def test_warmup_cosine_exact_values():
    iters, opt = 4, OptCfg(learning_rate=BASE, epochs=3, warmup_epochs=2)
    w, m = 8, 20
    lrs = _lrs_used(build_scheduler(_optimizer(), opt, iters), m + 1)
    assert total_epochs(opt) == 5
    assert lrs[0] == 0.0
    assert lrs[1] == pytest.approx(BASE / (w - 1), rel=1e-12)
    assert lrs[5] == pytest.approx(5 * BASE / (w - 1), rel=1e-12)
    assert lrs[w - 1] == pytest.approx(BASE, rel=1e-12)
    assert lrs[w] == pytest.approx(BASE, rel=1e-12)
    for k in (w + 1, 13, m - 1):
        expected = ETA_MIN + 0.5 * (BASE - ETA_MIN) * (1 + math.cos(math.pi * (k - w) / (m - w)))
        assert lrs[k] == pytest.approx(expected, rel=1e-12)
    assert lrs[m] == pytest.approx(ETA_MIN, rel=1e-9)


def test_closed_form_matches_chained_reference():
    w, m = 50, 500
    scheduler = WarmupScheduler(_optimizer(), warmup_steps=w, max_steps=m)
    got = _lrs_used(scheduler, m)
    for k, (a, b) in enumerate(zip(got, _chained_reference(w, m, m))):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), k


def test_multistep_with_warmup():
    iters = 3
    opt = OptCfg(
        learning_rate=BASE,
        epochs=4,
        warmup_epochs=1,
        schedule_type="multistep",
        schedule_steps=(1, 3),
        schedule_gamma=0.5,
    )
    lrs = _lrs_used(build_scheduler(_optimizer(), opt, iters), 15)
    assert lrs[:3] == pytest.approx([0.0, BASE / 2, BASE])
    assert lrs[3:6] == pytest.approx([BASE] * 3)  # epoch 0 after warmup
    assert lrs[6:12] == pytest.approx([BASE * 0.5] * 6)  # from W + 1 epoch
    assert lrs[12:15] == pytest.approx([BASE * 0.25] * 3)  # from W + 3 epochs


def test_without_warmup():
    cos = OptCfg(learning_rate=BASE, epochs=2, warmup=False)
    lrs = _lrs_used(build_scheduler(_optimizer(), cos, 5), 11)
    assert lrs[0] == BASE
    assert lrs[3] == pytest.approx(0.5 * BASE * (1 + math.cos(math.pi * 3 / 10)))
    assert lrs[10] == pytest.approx(0.0, abs=1e-15)  # torch CosineAnnealingLR floor (eta_min 0)
    step = OptCfg(
        learning_rate=BASE, epochs=3, warmup=False, schedule_type="multistep", schedule_steps=(1,)
    )
    lrs = _lrs_used(build_scheduler(_optimizer(), step, 2), 4)
    assert lrs == pytest.approx([BASE, BASE, BASE * 0.1, BASE * 0.1])


def test_state_dict_resume_continues_identically():
    full = _lrs_used(WarmupScheduler(_optimizer(), 10, 40), 40)
    first = WarmupScheduler(_optimizer(), 10, 40)
    _lrs_used(first, 17)
    state = first.state_dict()
    resumed = WarmupScheduler(_optimizer(), 10, 40)
    resumed.load_state_dict(state)
    resumed.optimizer.param_groups[0]["lr"] = first.optimizer.param_groups[0][
        "lr"
    ]  # optimizer state carries it
    assert _lrs_used(resumed, 23) == pytest.approx(full[17:], rel=1e-12)


def test_state_dict_keeps_the_configured_shape():
    old = WarmupScheduler(_optimizer(), 10, 40)
    _lrs_used(old, 20)
    longer = WarmupScheduler(_optimizer(), 10, 80)  # e.g. resumed with more epochs
    longer.load_state_dict(old.state_dict())
    assert longer.last_epoch == 20 and longer.max_steps == 80
    assert longer.lr_at(20, BASE) == pytest.approx(
        ETA_MIN + 0.5 * (BASE - ETA_MIN) * (1 + math.cos(math.pi * 10 / 70))
    )


def test_empty_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="no batch"):
        build_scheduler(_optimizer(), OptCfg(), 0)

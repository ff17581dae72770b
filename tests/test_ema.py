"""Model EMA math (reference-spec §6.5)."""

import torch
from torch import nn

from libs.engine.ema import ModelEma


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_is_frozen_eval_copy():
    model = _model()
    ema = ModelEma(model, decay=0.999)
    assert not ema.module.training and model.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()


def test_update_formula_params_and_buffers():
    model = _model()
    ema = ModelEma(model, decay=0.9)
    old = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(5, 3))  # moves BatchNorm running stats and the integer counter
    ema.update(model)
    new = model.state_dict()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * old[key] + 0.1 * new[key], rtol=1e-6, atol=1e-7)
        else:  # num_batches_tracked: copied, not averaged
            assert torch.equal(value, new[key])


def test_repeated_updates_converge_geometrically():
    model = nn.Linear(2, 2)
    ema = ModelEma(model, decay=0.5)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.zero_()
    for _ in range(3):
        ema.update(model)
    torch.testing.assert_close(ema.module.weight, start * 0.125)


def test_set_copies_exactly():
    model = nn.Linear(2, 2)
    ema = ModelEma(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.set(model)
    assert torch.equal(ema.module.weight, model.weight)

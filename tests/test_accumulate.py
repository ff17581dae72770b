"""Gradient accumulation: K micro-batches per step give the update of one K-times-larger batch.

`loader.batch_size` stays the effective batch (4 here), so both runs see the same videos per
step, the same crops (drawn in sample order from one RNG stream) and the same LR schedule; drop
path is off. The loss normaliser is updated once per step with the summed num_pos, as one big
batch would, so weights, EMA and normaliser agree to float tolerance. The optimizer is SGD:
AdamW divides by sqrt(v), which turns the float noise of gradients that are zero in exact
arithmetic (attention key biases: softmax ignores them) into lr-sized differences.
"""

import pytest
import torch

from tests.test_resume_exact import in_process, make_tiny_config  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_tiny_config(
        tmp_path_factory.mktemp("accumulate"),
        loader={"batch_size": 4, "num_workers": 0},
        opt={"ckpt_every_iters": 0},
    )


def _train(workspace, name: str, *opts: str) -> dict:
    import train

    args = [str(workspace), "--name", name, "--device", "cpu", "--opts",
            "model.block.args.drop_path=0.0", "opt.type=SGD", "opt.learning_rate=0.05",
            "train.clip_grad_l2norm=-1",  # clipping would hide a wrongly scaled gradient
            *opts]  # fmt: skip
    assert train.main(args) == 0
    return torch.load(workspace.parent / "runs" / f"tiny_{name}" / "last.pth", weights_only=True)


def test_accumulation_equals_the_big_batch(workspace, in_process):  # noqa: F811
    big = _train(workspace, "big")
    for k in (2, 4):
        acc = _train(workspace, f"acc{k}", f"opt.accumulate={k}")
        assert acc["iteration"] == big["iteration"] == 4  # 8 videos / 4 per step x 2 epochs
        norm_acc, norm_big = (float(c["model"]["loss_normalizer"]) for c in (acc, big))
        assert norm_acc == pytest.approx(norm_big, rel=1e-12)
        for key in ("model", "model_ema"):
            for name, value in big[key].items():
                torch.testing.assert_close(
                    acc[key][name], value, rtol=1e-5, atol=1e-6, msg=f"K={k} {key}.{name}"
                )


def test_batch_must_divide_by_accumulate(workspace, in_process, capsys):  # noqa: F811
    import train

    args = [str(workspace), "--name", "bad", "--opts", "opt.accumulate=3"]
    assert train.main(args) == 2
    assert "divisible by world_size (1) x opt.accumulate (3)" in capsys.readouterr().err

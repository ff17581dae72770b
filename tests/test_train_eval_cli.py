"""End to end: train.py then eval.py on a tiny synthetic dataset; resume; clear CLI errors.

The dataset is 4 training + 3 validation videos of 30 s with synthetic 16-d features; the model
is the tiny conv detector (2 levels, 16 channels). Each training run is 2 epochs x 2 iterations.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.tiny import tiny_annotations, tiny_config_dict

REPO = Path(__file__).resolve().parents[1]


def _annotations() -> dict:
    return tiny_annotations(num_videos=7, num_train=4)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    from libs.commands.make_synthetic import make_synthetic

    root = tmp_path_factory.mktemp("tiny")
    json_file = root / "anno.json"
    json_file.write_text(json.dumps(_annotations()))
    make_synthetic(
        str(json_file), str(root / "feats"), dim=16, feat_stride=8, num_frames=16, ext=".pt", seed=0
    )
    cfg = tiny_config_dict(json_file, root / "feats", root / "ckpt", {
        "dataset": {"file_ext": ".pt", "crop_ratio": [0.9, 1.0]},
        "train": {"clip_grad_l2norm": 1.0},
        "opt": {"learning_rate": 1e-3, "weight_decay": 0.05, "epochs": 1, "warmup_epochs": 1,
                "ckpt_freq": 1, "print_freq": 1},
    })
    path = root / "tiny_cli.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path




def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_then_eval_cli(tiny_config):
    out = _run("train.py", tiny_config, "--name", "cli", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-3000:]
    run = Path(yaml.safe_load(tiny_config.read_text())["output_folder"]) / "tiny_cli_cli"
    assert f"run folder: {run}" in out.stdout and "mAP" in out.stdout
    # the epoch count is stated at start in words (opt.epochs excludes warmup)
    from libs.core.config import describe_schedule, load_config

    assert f"training {describe_schedule(load_config(tiny_config))} x" in (run / "log.txt").read_text()
    for name in (
        "config.yaml",
        "log.txt",
        "last.pth",
        "epoch_001.pth",
        "epoch_002.pth",
        "results.json",
        "metrics.json",
    ):
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "logs").iterdir())
    train_metrics = json.loads((run / "metrics.json").read_text())
    # the reported result, plus which one it is and the last / best evaluated epochs (issue 11)
    assert set(train_metrics) == {"tiou", "mAP", "average_mAP", "protocol", "reported", "last", "best"}
    assert train_metrics["protocol"]["checkpoint"] == "last"
    assert train_metrics["reported"] == "last" and train_metrics["last"]["epoch"] == 2
    assert train_metrics["last"]["average_mAP"] == train_metrics["average_mAP"]
    assert train_metrics["best"] == train_metrics["last"]  # only the last epoch was evaluated
    history = (run / "val_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [2]
    assert not (run / "best.pth").exists()  # nothing to choose from: best.pth only with eval_start_epoch
    assert train_metrics["tiou"] == [
        0.3,
        0.5,
        0.7,
    ]
    assert set(json.loads((run / "results.json").read_text())["results"]) <= {
        "vid4",
        "vid5",
        "vid6",
    }

    out = _run("eval.py", tiny_config, run / "last.pth", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-3000:]
    eval_metrics = json.loads((run / "metrics_eval.json").read_text())
    assert (run / "results_eval.json").is_file()
    # eval.py loads the same EMA weights, so it reproduces the end-of-training evaluation
    assert eval_metrics["average_mAP"] == pytest.approx(train_metrics["average_mAP"], abs=1e-6)

    out = _run(
        "eval.py", tiny_config, run, "--opts", "test.nms_method=hard", "--diagnose", run / "diag"
    )  # a run folder → its last.pth; --diagnose runs DETAD's analyses on the written results
    assert out.returncode == 0, out.stderr[-3000:]
    diagnosis = json.loads((run / "diag" / "diagnosis.json").read_text())
    assert {"false_positive", "false_negative", "sensitivity"} <= set(diagnosis)
    assert (run / "diag" / "report.html").is_file()
    assert (run / "results_eval_1.json").is_file() and (
        run / "metrics_eval_1.json"
    ).is_file()  # no overwrite


def test_bad_config_key_exits_2_with_one_line(tiny_config):
    out = _run("train.py", tiny_config, "--opts", "opt.epoch=3")
    assert out.returncode == 2
    # the last stderr line is the error (an import-time warning, e.g. libs._C not built, may
    # precede it)
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: ") and "opt.epoch" in last and "did you mean 'opt.epochs'" in last
    )
    assert "Traceback" not in out.stderr


def test_eval_missing_checkpoint_exits_2(tiny_config, tmp_path):
    out = _run("eval.py", tiny_config, tmp_path / "missing.pth")
    assert out.returncode == 2 and "missing.pth" in out.stderr and "Traceback" not in out.stderr


def test_resume_continues_identically(tiny_config, tmp_path, in_process):
    import train

    # window attention with drop path: training also draws from the global torch RNG
    opts = [
        "--device",
        "cpu",
        "--opts",
        f"output_folder={tmp_path}",
        "model.block.type=window_attn",
        "model.block.args.drop_path=0.5",
        "model.n_mha_win_size=5",
    ]
    # the uninterrupted run also evaluates after epoch 1: evaluation must not shift the training
    # randomness
    assert train.main([str(tiny_config), "--name", "full", *opts, "opt.eval_start_epoch=0"]) == 0
    full = tmp_path / "tiny_cli_full"
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(full / "epoch_001.pth", half / "epoch_001.pth")  # as if it died after epoch 1
    shutil.copy(full / ".actionmamba_run", half)  # a run folder: --resume writes only into one
    assert train.main([str(tiny_config), "--resume", str(half / "epoch_001.pth"), *opts]) == 0

    a = torch.load(full / "last.pth", weights_only=True)
    b = torch.load(half / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["iteration"] == b["iteration"] == 4
    assert a["model"]["loss_normalizer"] == b["model"]["loss_normalizer"] != 10.0
    for key in ("model", "model_ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name}"
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    torch.testing.assert_close(a["optimizer"]["state"], b["optimizer"]["state"], rtol=0, atol=0)
    # the same evaluations: the resumed run keeps the stored opt.eval_start_epoch=0, so it first
    # evaluates epoch 1 (its folder has no record of it), then epoch 2
    full_metrics, half_metrics = (json.loads((r / "metrics.json").read_text()) for r in (full, half))
    assert full_metrics == half_metrics


def test_non_finite_loss_stops_before_the_step():
    from torch import nn

    from libs.engine.ema import ModelEma
    from libs.engine.scheduler import WarmupScheduler
    from libs.engine.train_step import TrainState, train_step

    class Diverging(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(2, 1)

        def forward(self, batch):
            return {"cls_loss": self.w.weight.sum() * float("nan"), "reg_loss": self.w.bias.sum()}

    model = Diverging()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(model, ModelEma(model), optimizer, WarmupScheduler(optimizer, 0, 10))
    before = model.w.weight.detach().clone()
    with pytest.raises(FloatingPointError, match=r"epoch 3 iteration 7 \(cls_loss=nan, reg_loss="):
        train_step(state, None, clip_grad_l2norm=1.0, epoch=2, iter_idx=7)
    assert torch.equal(model.w.weight, before) and state.iteration == 0

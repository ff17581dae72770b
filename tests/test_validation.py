"""Validation during training (issue 11): when it runs, what it leaves in the run folder
(val_history.jsonl, metrics.json with last and best, best.pth, TensorBoard), that it never
changes the training, that a run killed during an evaluation resumes to the same history, and
one clear error for settings that cannot work.

The tiny run of test_resume_exact: 3 epochs (1 warmup) x 4 iterations, 2 validation videos.
"""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_resume_exact import REPO, assert_same_checkpoint, in_process, make_tiny_config  # noqa: F401

LOSS_LINE = re.compile(r"(epoch \d+ \[\d+/\d+\] lr \S+ loss .*\))")
TIMING = ("wall_time", "eval_seconds")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_tiny_config(
        tmp_path_factory.mktemp("validation"),
        opt={"epochs": 2, "ckpt_every_iters": 0, "print_freq": 1},
    )


def _train(workspace: Path, name: str, *opts: str, code: int = 0) -> Path:
    import train

    args = [str(workspace), "--name", name, "--device", "cpu", "--opts", *opts]
    assert train.main(args) == code
    return workspace.parent / "runs" / f"tiny_{name}"


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "val_history.jsonl").read_text().splitlines()]


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_validation_on_or_off_trains_identically(workspace, in_process, monkeypatch):  # noqa: F811
    import libs.engine.validation as validation

    builds = []  # the ground truth is read once per run, however many evaluations it has
    build = validation.build_val_evaluator
    monkeypatch.setattr(validation, "build_val_evaluator", lambda cfg: builds.append(1) or build(cfg))
    off = _train(workspace, "off")
    on = _train(workspace, "on", "opt.eval_start_epoch=0")
    assert len(builds) == 2  # one per run: "off" evaluates once, "on" three times
    losses_off = LOSS_LINE.findall((off / "log.txt").read_text())
    assert len(losses_off) == 9  # iterations 1..3 of 3 epochs (iteration 0 is not logged)
    assert LOSS_LINE.findall((on / "log.txt").read_text()) == losses_off
    assert_same_checkpoint(off / "last.pth", on / "last.pth")
    assert [r["epoch"] for r in _history(off)] == [3]
    assert [r["epoch"] for r in _history(on)] == [1, 2, 3]
    assert _without_timing(_history(on))[-1] == _without_timing(_history(off))[-1]


def test_history_metrics_best_and_tensorboard(workspace, in_process):  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _train(workspace, "every2", "opt.eval_start_epoch=0", "opt.eval_interval=2")
    history = _history(run)
    assert [r["epoch"] for r in history] == [1, 3] and [r["step"] for r in history] == [4, 12]
    for r in history:
        assert r["tiou"] == [0.5] and len(r["mAP"]) == 1 and r["average_mAP"] == r["mAP"][0]
        assert r["wall_time"] > 1e9 and r["eval_seconds"] >= 0
    best = max(history, key=lambda r: (r["average_mAP"], -r["epoch"]))  # earlier epoch on ties
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["reported"] == "last" and metrics["average_mAP"] == history[-1]["average_mAP"]
    assert metrics["last"] == {k: history[-1][k] for k in ("epoch", "tiou", "mAP", "average_mAP")}
    assert metrics["best"] == {k: best[k] for k in ("epoch", "tiou", "mAP", "average_mAP")}
    ckpt = torch.load(run / "best.pth", weights_only=True)
    assert ckpt["epoch"] == ckpt["best_on_val"]["epoch"] == best["epoch"]  # that epoch's weights
    assert (run / "last.pth").is_file() and (run / "results.json").is_file()
    assert "per tIoU 0.50:" in (run / "log.txt").read_text()
    events = EventAccumulator(str(run / "logs"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "val/mAP@0.50" in tags and "val/avg_mAP" in tags
    assert [e.step for e in events.Scalars("val/avg_mAP")] == [1, 3]


def test_best_is_reported_when_asked(workspace, in_process):  # noqa: F811
    run = _train(workspace, "best", "opt.eval_start_epoch=1", "eval.checkpoint=best-on-val")
    history = _history(run)
    assert [r["epoch"] for r in history] == [2, 3]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["reported"] == "best" and metrics["protocol"]["epoch"] == metrics["best"]["epoch"]
    assert metrics["average_mAP"] == metrics["best"]["average_mAP"]
    assert metrics["last"]["epoch"] == 3


_KILL_DURING_EVAL = """
import os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {repo!r})
import libs.engine.validation as val
import train

real_score, calls = val.score, []

def score(raw, cfg, epoch=None, evaluator=None):
    calls.append(1)
    if len(calls) == 2:  # the evaluation of epoch 2: after last.pth, before its history line
        os.kill(os.getpid(), signal.SIGKILL)
    return real_score(raw, cfg, epoch, evaluator)

val.score = score
sys.exit(train.main(sys.argv[1:]))
"""


def test_killed_during_validation_resumes_to_the_same_history(workspace, in_process):  # noqa: F811
    import train

    reference = _train(workspace, "ref", "opt.eval_start_epoch=0")
    script = _KILL_DURING_EVAL.format(repo=str(REPO))
    args = [str(workspace), "--name", "killed", "--device", "cpu", "--opts", "opt.eval_start_epoch=0"]
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=180)  # fmt: skip
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    run = workspace.parent / "runs" / "tiny_killed"
    assert [r["epoch"] for r in _history(run)] == [1]  # epoch 2's evaluation never finished
    assert torch.load(run / "last.pth", weights_only=True)["epoch"] == 2
    resume = [str(workspace), "--resume", str(run), "--device", "cpu", "--opts", "opt.eval_start_epoch=0"]
    assert train.main(resume) == 0
    assert _without_timing(_history(run)) == _without_timing(_history(reference))
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )
    assert_same_checkpoint(reference / "last.pth", run / "last.pth")


@pytest.mark.parametrize(
    "override, message",
    [
        ("opt.eval_interval=0", "opt.eval_interval must be >= 1"),
        ("opt.eval_interval=-1", "opt.eval_interval must be >= 1"),
        ("opt.eval_start_epoch=3", "opt.eval_start_epoch=3 is outside this run's 3 epochs"),
        ("opt.eval_start_epoch=-2", "opt.eval_start_epoch=-2 is outside"),
        ("dataset.val_split=[]", "dataset.val_split is empty"),
    ],
)
def test_bad_validation_settings_fail_before_training(workspace, in_process, capsys, override, message):  # noqa: F811
    name = "bad" + str(abs(hash(override)) % 1000)
    run = _train(workspace, name, override, code=2)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err[-1]
    assert not run.exists()  # nothing was started: no run folder, no checkpoint

"""Evaluation protocol (`eval:` config section): each option changes the numbers as it should,
the protocol is printed and stored with them, best-on-val keeps best.pth and names its epoch."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from libs.core.config import ConfigError, load_config
from libs.evaluation import build_evaluator, format_table

from tests.test_train_eval_cli import tiny_config  # noqa: F401  (fixture)

# video a: one Jump, annotated twice (a near-duplicate, as ActionFormer/VMS clean up);
# video b: one Jump that no prediction finds; video c: one Run, found.
GT = {
    "database": {
        "a": {"subset": "test", "duration": 60.0, "annotations": [
            {"label": "Jump", "segment": [0.0, 10.0]},
            {"label": "Jump", "segment": [0.0, 10.0005]},
        ]},
        "b": {"subset": "test", "duration": 60.0, "annotations": [
            {"label": "Jump", "segment": [20.0, 30.0]},
        ]},
        "c": {"subset": "test", "duration": 60.0, "annotations": [
            {"label": "Run", "segment": [5.0, 15.0]},
        ]},
    }
}  # fmt: skip
RESULTS = {
    "results": {
        "a": [{"label": "Jump", "segment": [0.0, 10.0], "score": 0.9}],
        "b": [{"label": "Jump", "segment": [40.0, 50.0], "score": 0.8}],  # a false positive
        "c": [{"label": "Run", "segment": [5.0, 15.0], "score": 0.7}],
    }
}


def _map(tmp_path, *opts):
    cfg = load_config(data={"dataset": {"tiou_thresholds": [0.5]}}, overrides=list(opts))
    return build_evaluator(cfg.eval, GT, "test", cfg.dataset.tiou_thresholds).evaluate(RESULTS)


def test_each_option_changes_the_numbers(tmp_path):
    # official: Jump has 3 GT, 1 TP (rank 1) then 1 FP → AP 1/3; Run AP 1 → mAP 2/3
    base = _map(tmp_path)
    assert base.average_mAP == pytest.approx((1 / 3 + 1) / 2)
    assert base.protocol["remove_duplicates"] is False and base.protocol["checkpoint"] == "last"
    # de-duplicated: Jump has 2 GT → AP 1/2
    assert _map(tmp_path, "eval.remove_duplicates=true").average_mAP == pytest.approx(0.75)
    # blocking b drops its GT and its false positive: Jump 2 GT (duplicate kept) → AP 1/2
    blocked = _map(tmp_path, "eval.blocked_videos=[b]")
    assert blocked.average_mAP == pytest.approx(0.75) and blocked.protocol["blocked_videos"] == ["b"]
    # the same from a file, and exclusion of a known-wrong video, combined with de-duplication
    ids = tmp_path / "blocked.json"
    ids.write_text(json.dumps(["b"]))
    both = _map(tmp_path, f"eval.blocked_videos_file={ids}", "eval.remove_duplicates=true")
    assert both.average_mAP == pytest.approx(1.0) and both.protocol["blocked_videos"] == ["b"]
    excluded = _map(tmp_path, "eval.exclude_videos=[a]")  # Jump: only b's GT, a FP → AP 0
    assert excluded.average_mAP == pytest.approx(0.5)
    assert excluded.protocol["exclude_videos"] == ["a"] and excluded.protocol["blocked_videos"] == []
    table = format_table(excluded)
    assert table.splitlines()[0].startswith("protocol: ") and "excluded 1 video (a)" in table
    assert json.loads(json.dumps(excluded.to_json()))["protocol"]["exclude_videos"] == ["a"]


def test_bad_protocol_values_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="eval.checkpoint"):
        load_config(data={"eval": {"checkpoint": "best"}})
    with pytest.raises(ConfigError, match="opt.eval_start_epoch"):
        load_config(data={}, overrides=["eval.checkpoint=best-on-val"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"b": 1}))
    with pytest.raises(ValueError, match="JSON list"):
        _map(tmp_path, f"eval.blocked_videos_file={bad}")


def test_best_on_val_keeps_best_pth_and_reports_its_epoch(
    tiny_config, tmp_path, in_process, capsys  # noqa: F811
):
    import train

    opts = [
        "--device", "cpu", "--opts", f"output_folder={tmp_path}", "opt.epochs=2",
        "opt.eval_start_epoch=0", "eval.checkpoint=best-on-val", "eval.exclude_videos=[vid6]",
    ]  # fmt: skip
    assert train.main([str(tiny_config), "--name", "best", *opts]) == 0
    run = tmp_path / "tiny_cli_best"
    best = torch.load(run / "best.pth", weights_only=True)
    record = best["best_on_val"]
    assert 1 <= record["epoch"] <= 3 and best["epoch"] == record["epoch"]  # that epoch's weights
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"]["checkpoint"] == "best-on-val"
    assert metrics["protocol"]["epoch"] == record["epoch"]
    assert metrics["protocol"]["exclude_videos"] == ["vid6"]
    assert metrics["average_mAP"] == pytest.approx(record["average_mAP"])
    out = capsys.readouterr().out
    assert f"checkpoint best-on-val (epoch {record['epoch']})" in out
    log = Path(run / "log.txt").read_text()
    assert f"best-on-val: reporting epoch {record['epoch']} of 3" in log
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["eval"]["checkpoint"] == "best-on-val"

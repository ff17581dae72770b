"""tools/diagnose.py: files, diagnosis.json layout, self-contained report, errors."""

import json
import sys

import pytest

from libs.diagnosis import diagnose
from tests.test_diagnosis import GT, PREDS, results
from libs.commands import diagnose as cli

ERRORS = ["True Positive", "Double Detection Err", "Wrong Label Err", "Localization Err",
          "Confusion Err", "Background Err"]  # fmt: skip


@pytest.fixture
def files(tmp_path):
    gt, res = tmp_path / "gt.json", tmp_path / "results.json"
    gt.write_text(json.dumps(GT))
    res.write_text(json.dumps(results(PREDS)))
    return gt, res, tmp_path


def test_cli_writes_json_figures_and_a_self_contained_report(files, capsys):
    gt, res, tmp = files
    config = tmp / "run.yaml"
    config.write_text("model:\n  block: {type: dbm}\n")
    out = tmp / "diag"
    argv = [str(res), "--gt", str(gt), "--split", "test", "--protocol", "thumos14", "--out", str(out),
            "--config", str(config)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "average-mAP_N 31.60" in printed and "Wrong Label" in printed
    d = json.loads((out / "diagnosis.json").read_text())
    assert list(d)[:5] == ["tiou_thresholds", "false_positive", "false_negative", "sensitivity",
                           "average_mAP"]  # fmt: skip
    assert list(d["false_positive"]) == ["average_mAP_N", "profile", "average_mAP_N_gain"]
    assert list(d["false_positive"]["profile"]) == [f"{k}G" for k in range(1, 11)]
    assert list(d["false_positive"]["profile"]["1G"]) == ERRORS
    assert list(d["false_positive"]["average_mAP_N_gain"]) == ERRORS[1:]
    assert list(d["false_negative"]) == ["coverage", "length", "num-instances"]
    assert list(d["sensitivity"]) == ["base", "coverage", "length", "num-instances"]
    assert list(d["false_negative"]["num-instances"]) == ["XS", "S", "M", "L"]
    assert d["config"] == config.read_text()
    for name in ("false_positive", "false_negative", "sensitivity"):
        assert (out / f"{name}_analysis.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3
    for fetch in ('src="http', "href=", "<script", "<link", "url("):  # nothing fetched
        assert fetch not in html
    assert "<td>A</td>" in html and "block: {type: dbm}" in html


def test_cli_no_figures_and_overrides(files, capsys):
    """Also the old form (GT_JSON RESULTS_JSON, --subset): it works, with deprecation lines."""
    gt, res, tmp = files
    out = tmp / "d2"
    argv = [str(gt), str(res), "--subset", "TEST", "--out", str(out), "--no-figures",
            "--bins", "length=0,5,inf:short,long", "--tiou", "0.3", "0.5", "--limit-factor", "2"]
    assert cli.main(argv) == 0
    d = json.loads((out / "diagnosis.json").read_text())
    assert d["tiou_thresholds"] == [0.3, 0.5]
    assert list(d["false_negative"]["length"]) == ["short", "long"]
    assert list(d["false_positive"]["profile"]) == ["1G", "2G"]
    assert not list(out.glob("*.png")) and "not drawn" in (out / "report.html").read_text()
    err = capsys.readouterr().err
    assert "the form GT_JSON RESULTS is deprecated" in err and "--subset is deprecated" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "validation"], "no video of split ['validation']"),
        (["--bins", "length=1"], "--bins 'length=1'"),
        (["--config", "/nonexistent.yaml"], "cannot read --config /nonexistent.yaml"),
    ],
)
def test_cli_bad_input_is_one_line_and_status_2(files, capsys, extra, message):
    gt, res, tmp = files
    argv = [str(res), "--gt", str(gt), "--split", "test", "--out", str(tmp / "o"), "--no-figures"]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("diagnose: error: ") and message in err and "Traceback" not in err


def test_missing_matplotlib_is_a_clear_error(files, capsys, monkeypatch):
    gt, res, tmp = files
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    assert cli.main([str(res), "--gt", str(gt), "--split", "test", "--out", str(tmp / "o")]) == 2
    err = capsys.readouterr().err
    assert "need matplotlib" in err and "--no-figures" in err
    assert not (tmp / "o").exists()  # failed before any work


def test_cli_reads_a_raw_prediction_cache(files, tmp_path, capsys):
    """eval.py --save-raw output: post-processed with its saved test settings, same numbers as
    the results JSON of those detections, and its config in the report."""
    import torch

    from libs.core.structures import Detections
    from libs.evaluation import detections_to_results
    from libs.inference.raw import RawPredictions, VideoMeta
    from tests.tiny import tiny_config_dict

    gt, _, _ = files
    cfg = tiny_config_dict(gt, tmp_path / "feats", tmp_path / "run")
    dets, metas = [], []
    for vid in ("v1", "v2"):  # fps 1, stride 1, 1 frame per feature: seconds = grid + 0.5
        rows = [p for p in PREDS if p[0] == vid]
        segs = torch.tensor([[s - 0.5, e - 0.5] for _, _, s, e, _ in rows])
        labels = torch.tensor([0 if lab == "A" else 1 for _, lab, _, _, _ in rows])
        scores = torch.tensor([sc for *_, sc in rows])
        dets.append(Detections(vid, segs, scores, labels, "grid"))
        metas.append(VideoMeta(vid, fps=1.0, duration=100.0, feat_stride=1.0, feat_num_frames=1.0))
    raw = RawPredictions(dets, metas, id_to_name={0: "A", 1: "B"}, config=cfg)
    raw.save(tmp_path / "raw.pt")
    out = tmp_path / "from_raw"
    argv = [str(tmp_path / "raw.pt"), "--gt", str(gt), "--split", "test", "--out", str(out), "--no-figures"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    d = json.loads((out / "diagnosis.json").read_text())
    assert d["config"]["dataset"]["json_file"] == str(gt)
    from libs.core.config import load_config

    post = raw.postprocess(load_config(data=cfg).test)
    want = diagnose(GT, detections_to_results(post, raw.id_to_name), "test")
    assert d["sensitivity"] == want["sensitivity"] and d["false_positive"] == want["false_positive"]
    assert d["counts"]["predictions"] == want["counts"]["predictions"] > 0


def test_run_diagnosis_for_config_uses_the_runs_split_protocol_and_exclusions(files, tmp_path):
    """What eval.py --diagnose DIR calls."""
    from libs.core.config import load_config
    from libs.diagnosis.from_run import protocol_for_dataset, run_diagnosis_for_config
    from tests.tiny import tiny_config_dict

    gt, res, _ = files
    changes = {"dataset": {"val_split": ["test"]}, "eval": {"exclude_videos": ["v2"]}}
    cfg = load_config(data=tiny_config_dict(gt, tmp_path / "f", tmp_path / "r", changes))
    d = run_diagnosis_for_config(cfg, str(res), tmp_path / "diag", figures=False)
    want = diagnose(GT, results(PREDS), "test", "activitynet", blocked_videos=["v2"])
    assert d["sensitivity"] == want["sensitivity"]
    assert d["settings"]["blocked_videos"] == ["v2"] and d["settings"]["protocol"] == "activitynet"
    assert d["config"]["dataset"]["val_split"] == ["test"]
    assert (tmp_path / "diag" / "report.html").exists()
    assert protocol_for_dataset("thumos14") == "thumos14"


def test_run_diagnosis_for_config_warns_that_remove_duplicates_is_not_applied(files, tmp_path, caplog):
    from libs.core.config import load_config
    from libs.diagnosis.from_run import run_diagnosis_for_config
    from tests.tiny import tiny_config_dict

    gt, res, _ = files
    for on in (False, True):
        changes = {"dataset": {"val_split": ["test"]}, "eval": {"remove_duplicates": on}}
        cfg = load_config(data=tiny_config_dict(gt, tmp_path / "f", tmp_path / "r", changes))
        caplog.clear()
        run_diagnosis_for_config(cfg, str(res), tmp_path / "diag", figures=False)
        assert ("eval.remove_duplicates is on" in caplog.text) == on

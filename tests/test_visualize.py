"""tools/visualize.py: timeline PNGs per video and the PR / per-class AP chart.

Hand-made ground truth and detections (no model): 4 validation videos, 3 classes.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("Dive", "Kick", "Wave")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Annotation JSON + a results JSON with noisy copies of the GT plus false positives."""
    root = tmp_path_factory.mktemp("vis")
    rng = np.random.default_rng(0)
    database, results = {}, {}
    for v in range(5):
        acts, dets = [], []
        for c, name in enumerate(CLASSES):
            for k in range(v % 3 + 1):
                start = float(rng.uniform(0, 50))
                seg = [round(start, 2), round(start + float(rng.uniform(2, 9)), 2)]
                acts.append({"label": name, "label_id": c, "segment": seg})
                jitter = rng.normal(0, 1.0, 2)
                dets.append(
                    {
                        "label": name,
                        "segment": [seg[0] + jitter[0], seg[1] + jitter[1]],
                        "score": float(rng.uniform(0.3, 1.0)),
                    }
                )
        for _ in range(6):  # false positives, some with integer labels
            start = float(rng.uniform(0, 55))
            label = CLASSES[int(rng.integers(3))] if rng.uniform() < 0.7 else int(rng.integers(3))
            dets.append(
                {
                    "label": label,
                    "segment": [start, start + float(rng.uniform(1, 5))],
                    "score": float(rng.uniform(0, 0.6)),
                }
            )
        subset = "validation" if v < 4 else "training"
        database[f"video_{v}"] = {
            "subset": subset,
            "duration": 60.0,
            "fps": 25.0,
            "annotations": acts,
        }
        results[f"video_{v}"] = dets
    (root / "gt.json").write_text(json.dumps({"database": database}))
    (root / "results.json").write_text(json.dumps({"version": "VERSION 1.3", "results": results}))
    return {"root": root, "gt": root / "gt.json", "results": root / "results.json"}


def _is_png(path: Path) -> tuple[int, int]:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    height, width = matplotlib.image.imread(str(path)).shape[:2]
    assert width > 400 and height > 150
    return width, height


def test_timeline_one_png_per_split_video(data, tmp_path):
    from libs.commands import visualize

    out = tmp_path / "timelines"
    code = visualize.main(
        [
            "timeline",
            str(data["results"]),
            "--gt",
            str(data["gt"]),
            "--split",
            "validation",
            "--top-k",
            "6",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"video_{v}.png" for v in range(4)]
    for path in out.iterdir():
        _is_png(path)


def test_timeline_without_ground_truth_uses_video_info(tmp_path):
    """infer.py output: integer labels, durations from video_info, odd characters in ids."""
    from libs.commands import visualize

    results = {
        "results": {
            "cam/1 a": [
                {"label": 0, "segment": [1.0, 4.0], "score": 0.9},
                {"label": 2, "segment": [2.0, 3.0], "score": 0.2},
            ],
            "empty": [],
        },
        "video_info": {"cam/1 a": {"duration": 12.5}, "empty": {"duration": 3.0}},
    }
    path = tmp_path / "det.json"
    path.write_text(json.dumps(results))
    assert visualize.main(["timeline", str(path), "--out", str(tmp_path / "t")]) == 0
    _is_png(tmp_path / "t" / "cam_1_a.png")
    _is_png(tmp_path / "t" / "empty.png")


def test_pr_chart_and_curves_integrate_to_the_evaluator_ap(data, tmp_path):
    from libs.evaluation import DetectionMAP
    from libs.commands import visualize

    out = tmp_path / "pr.png"
    assert (
        visualize.main(
            [
                "pr",
                str(data["results"]),
                "--gt",
                str(data["gt"]),
                "--split",
                "validation",
                "--tiou",
                "0.3",
                "0.5",
                "0.7",
                "--curve-tiou",
                "0.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    _is_png(out)

    evaluator = DetectionMAP(str(data["gt"]), "validation", [0.3, 0.5, 0.7])
    result = evaluator.evaluate(str(data["results"]))
    curves = visualize.pr_curves(evaluator, str(data["results"]), 0.5)
    assert len(curves) == len(result.class_names) == 3
    for c, (recall, precision) in enumerate(curves):
        area = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))  # precision is the envelope
        assert area == pytest.approx(result.ap[1, c], abs=1e-12)
        assert np.all(np.diff(precision) <= 0)
    assert 0 < result.ap[1].min() < 1  # neither trivial nor perfect


def test_errors_and_cli(data, tmp_path, capsys):
    from libs.commands import visualize

    assert (
        visualize.main(["pr", str(data["results"]), "--gt", str(data["gt"]), "--curve-tiou", "0.55"]) == 2
    )
    assert "not in the tIoU set" in capsys.readouterr().err
    assert visualize.main(["pr", str(tmp_path / "missing.json"), "--gt", str(data["gt"])]) == 2
    assert "missing.json" in capsys.readouterr().err

    proc = subprocess.run(
        [
            sys.executable,
            "tools/visualize.py",
            "timeline",
            str(data["results"]),
            "--gt",
            str(data["gt"]),
            "--videos",
            "video_2",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _is_png(tmp_path / "video_2.png")


def test_pr_with_config_follows_its_eval_protocol(data, tmp_path, monkeypatch):
    """--config: the evaluation goes through build_evaluator with the config's `eval:` section."""
    import yaml

    from libs.evaluation import DetectionMAP
    from tests.tiny import tiny_config_dict
    from libs.commands import visualize

    changes = {"dataset": {"num_classes": 3, "tiou_thresholds": [0.3, 0.5, 0.7]},
               "eval": {"exclude_videos": ["video_0"], "remove_duplicates": True}}
    config = tmp_path / "vis.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(data["gt"], tmp_path, tmp_path, changes)))
    seen = {}
    monkeypatch.setattr(visualize, "plot_pr", lambda result, *a, **k: seen.setdefault("result", result))
    assert visualize.main(["pr", str(data["results"]), "--config", str(config)]) == 0
    result = seen["result"]
    assert result.protocol["exclude_videos"] == ["video_0"] and result.protocol["remove_duplicates"]
    expected = DetectionMAP(str(data["gt"]), "validation", [0.3, 0.5, 0.7], remove_duplicates=True,
                            blocked_videos=["video_0"]).evaluate(str(data["results"]))
    full = DetectionMAP(str(data["gt"]), "validation", [0.3, 0.5, 0.7]).evaluate(str(data["results"]))
    assert result.average_mAP == expected.average_mAP != full.average_mAP


def test_old_flags_keep_their_meaning(data, tmp_path, capsys):
    """--tious (the set), pr's one-value --tiou (the curve tIoU), --out-dir: one release more."""
    from libs.commands import visualize

    old = visualize.parse_args(["pr", "r.json", "--gt", "g.json", "--tious", "0.3", "0.5", "--tiou", "0.3"])
    assert (old.tiou, old.curve_tiou) == ([0.3, 0.5], 0.3)
    err = capsys.readouterr().err
    assert "--tious is deprecated" in err and "use --curve-tiou T" in err
    new = visualize.parse_args(["pr", "r.json", "--gt", "g.json", "--tiou", "0.3", "0.5", "--curve-tiou", "0.3"])
    assert (new.tiou, new.curve_tiou) == ([0.3, 0.5], 0.3) and capsys.readouterr().err == ""
    tl = visualize.parse_args(["timeline", "r.json", "--out-dir", "t", "--tiou", "0.5"])
    assert tl.out == "t" and tl.tiou == [0.5] and "--out-dir is deprecated" in capsys.readouterr().err
    assert visualize.main(["pr", str(data["results"]), "--gt", str(data["gt"]), "--tiou", "0.55",
                           "--out", str(tmp_path / "p.png")]) == 2
    assert "--curve-tiou 0.55 is not in the tIoU set" in capsys.readouterr().err

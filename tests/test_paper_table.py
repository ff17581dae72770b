"""tools/paper_table.py on made-up run folders and metrics files: best / last / differences."""

import json
import os

import pytest
import yaml

from tests.conftest import REPO
from tests.test_resume_exact import in_process  # noqa: F401  (fixture: one thread, state restored)

TIOU_THUMOS = [0.3, 0.4, 0.5, 0.6, 0.7]
TIOU_10 = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


from libs.commands import paper_table as pt


def _result(tiou, avg, epoch=None, **extra):
    """A metrics record whose mAP at threshold i is avg + 0.01 * (i - mean index): mean == avg."""
    mid = (len(tiou) - 1) / 2
    out = {"tiou": tiou, "mAP": [avg + 0.01 * (i - mid) for i in range(len(tiou))], "average_mAP": avg}
    if epoch is not None:
        out["epoch"] = epoch
    return {**out, **extra}


def _run(tmp_path, name, dataset, block, metrics=None, history=None):
    folder = tmp_path / name
    folder.mkdir()
    cfg = {"dataset": {"name": dataset}, "model": {"block": {"type": block, "args": {}}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        (folder / "val_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return str(folder)


def _row(out, dataset, block):
    line = next(x for x in out.splitlines() if x.startswith(f"| {dataset} | {block} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_best_and_last_side_by_side_with_the_paper(tmp_path, capsys):
    dbm = _run(tmp_path, "t_dbm", "thumos14", "dbm", {
        "last": _result(TIOU_THUMOS, 0.7250, epoch=50),
        "best": _result(TIOU_THUMOS, 0.7290, epoch=38),
        "reported": "best",
    })  # fmt: skip
    # the single-result schema (train.py today), best epoch from val_history.jsonl (ties: earlier)
    history = [_result(TIOU_10, a, epoch=e) for e, a in [(6, 0.40), (9, 0.4210), (12, 0.4210), (15, 0.4150)]]
    anet = _run(tmp_path, "a_vim", "anet", "vim", _result(TIOU_10, 0.4150, protocol={"checkpoint": "last", "epoch": 15}), history)
    # eval.checkpoint=best-on-val: the one result is the best epoch; the last is unknown
    hacs = _run(tmp_path, "h_win", "hacs", "window_attn", _result(TIOU_10, 0.4400, protocol={"checkpoint": "best-on-val", "epoch": 20}))
    out_md, out_json = tmp_path / "table.md", tmp_path / "table.json"
    assert pt.main([hacs, anet, dbm, "--out", str(out_md), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    # paper | best (epoch) | Δbest | last (epoch) | Δlast | which one the run reports
    assert _row(out, "THUMOS-14", "ActionMamba (DBM)")[2:] == ["72.72", "72.90 (ep 38)", "+0.18", "72.50 (ep 50)", "-0.22", "best"]
    assert _row(out, "ActivityNet-1.3", "ActionMamba (ViM)")[2:] == ["41.77", "42.10 (ep 9)", "+0.33", "41.50 (ep 15)", "-0.27", "last"]
    assert _row(out, "HACS", "ActionFormer (Win Attn)")[2:] == ["43.34", "44.00 (ep 20)", "+0.66", "-", "-", "best"]
    lines = out.splitlines()  # rows in the paper's order: THUMOS, ANet, HACS
    assert [i for i, x in enumerate(lines) if x.startswith("| THUMOS")] < [i for i, x in enumerate(lines) if x.startswith("| HACS")]
    # per-tIoU tables of the reported epoch: THUMOS best (0.729 -> 70.90 at 0.3), ANet last
    assert "| ActionMamba (DBM) | ours | 70.90 | 71.90 | 72.90 | 73.90 | 74.90 | 72.90 | +0.18 |" in out
    assert "| ActionMamba (ViM) | ours | 37.00 | 42.00 | 46.00 | 41.50 | -0.27 |" in out  # 0.5, 0.75, 0.95
    assert out_md.read_text() == out
    rows = json.loads(out_json.read_text())
    assert [(r["dataset"], r["block"]) for r in rows] == [("thumos", "dbm"), ("anet", "vim"), ("hacs", "winattn")]
    assert rows[0]["best"]["epoch"] == 38 and rows[0]["best"]["delta"] == pytest.approx(0.18)
    assert rows[0]["last"]["avg"] == pytest.approx(72.50) and rows[2]["last"] is None


def test_metrics_files_with_blocks_after_them_are_not_swallowed(tmp_path, capsys):
    """issue 16 item 3: `--blocks dbm file.json` used to take the file as a block name."""
    path = tmp_path / "dbm.json"
    path.write_text(json.dumps(_result(TIOU_10, 0.2900)))
    assert pt.main(["--dataset", "fineaction", "--blocks", "dbm", str(path)]) == 0
    out = capsys.readouterr().out
    assert _row(out, "FineAction", "ActionMamba (DBM)")[2:] == ["29.04", "-", "-", "29.00", "-0.04", "last"]
    with pytest.raises(SystemExit):  # a misspelt block is named, not read as a file
        pt.main(["--dataset", "fineaction", "--blocks", "dmb", str(path)])
    assert "'dmb' is neither a block" in capsys.readouterr().err


def test_positional_files_keep_the_paper_block_order(tmp_path, capsys):
    paths = []
    for i, blk in enumerate(["winattn", "vim", "dbm"]):
        path = tmp_path / f"{blk}.json"
        path.write_text(json.dumps(_result(TIOU_THUMOS, 0.70 + 0.01 * i)))
        paths.append(str(path))
    assert pt.main(paths + ["--dataset", "thumos"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "THUMOS-14", "ActionFormer (Win Attn)")[2:6] == ["71.86", "-", "-", "70.00"]
    assert _row(out, "THUMOS-14", "ActionMamba (DBM)")[5:7] == ["72.00", "-0.72"]
    with pytest.raises(SystemExit):  # 2 files for 3 blocks
        pt.main(paths[:2] + ["--dataset", "thumos"])


def test_bad_inputs_are_one_clear_error(tmp_path, capsys):
    bare = tmp_path / "m.json"
    bare.write_text(json.dumps(_result(TIOU_10, 0.4)))
    with pytest.raises(SystemExit):  # nothing names the dataset
        pt.main([str(bare), "--blocks", "dbm"])
    assert "pass --dataset" in capsys.readouterr().err
    broken = _run(tmp_path, "broken", "hacs", "dbm", {"tiou": TIOU_10, "average_mAP": 0.4})
    assert pt.main([broken]) == 2
    assert "missing key 'mAP'" in capsys.readouterr().err
    empty = _run(tmp_path, "empty", "hacs", "dbm")
    assert pt.main([empty]) == 2
    assert "no metrics.json or eval_metrics.json" in capsys.readouterr().err
    assert pt.main([str(tmp_path / "nope")]) == 2
    assert "no such run folder or metrics file" in capsys.readouterr().err
    bad_config = _run(tmp_path, "bad_config", "hacs", "dbm", _result(TIOU_10, 0.4))
    (tmp_path / "bad_config" / "config.yaml").write_text("dataset: [\n")
    assert pt.main([bad_config]) == 2
    assert "config.yaml: not valid YAML" in capsys.readouterr().err


def test_seed_table():
    avg = {(ds, blk): pt.PAPER[ds][blk]["avg"] for ds in pt.PAPER for blk in pt.PAPER[ds]}
    assert avg == {
        ("thumos", "winattn"): 71.86, ("thumos", "vim"): 72.44, ("thumos", "dbm"): 72.72,
        ("anet", "winattn"): 41.19, ("anet", "vim"): 41.77, ("anet", "dbm"): 42.02,
        ("hacs", "winattn"): 43.34, ("hacs", "vim"): 44.26, ("hacs", "dbm"): 44.56,
        ("fineaction", "winattn"): 27.22, ("fineaction", "vim"): 28.36, ("fineaction", "dbm"): 29.04,
    }  # fmt: skip


def test_a_real_run_folder(tmp_path, in_process, capsys):  # noqa: F811
    """train.py's own metrics.json (reported / last / best) and config.yaml, read back."""
    import train

    from tests.test_resume_exact import make_tiny_config

    cfg = make_tiny_config(tmp_path, num_train=4, opt={"epochs": 1, "ckpt_every_iters": 0})
    assert train.main([str(cfg), "--name", "pt", "--device", "cpu", "--opts", "opt.eval_start_epoch=0"]) == 0
    run = tmp_path / "runs" / "tiny_pt"
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    # the tiny config is neither a paper dataset nor a paper block: both are given
    assert pt.main([str(run), "--dataset", "hacs", "--blocks", "dbm"]) == 0
    row = _row(capsys.readouterr().out, "HACS", "ActionMamba (DBM)")
    best, last = metrics["best"], metrics["last"]
    assert row[3] == f"{100 * best['average_mAP']:.2f} (ep {best['epoch']})"
    assert row[5] == f"{100 * last['average_mAP']:.2f} (ep {last['epoch']})" and last["epoch"] == 2
    assert row[7] == metrics["reported"] == "last"

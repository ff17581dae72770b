"""The README's demo numbers come from the demo's recorded run, and the demo survives Ctrl-C.

- the README text between the demo markers is exactly what `tools/demo_record.render` makes of
  the committed `docs/demo_last_run.json` (or the "not recorded yet" line without one);
- rendering and `--update-readme` on a fabricated record: every number lands in the README,
  nothing outside the markers moves, quick or unfinished runs are refused;
- `tools/demo.py` end to end with a stand-in for train.py: Ctrl-C gives one line and status
  130, a rerun resumes the interrupted block, the next one reuses it.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

from tools import demo_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fabricated_record(**changes) -> dict:
    record = {
        "schema": demo_record.SCHEMA, "machine": {"cpu": "Test CPU 9000", "cores": 3,
                                                  "torch": "2.13.0+cpu", "python": "3.11.7"},
        "started": "2026-01-02T03:04:05+00:00", "finished": "2026-01-02T03:10:00+00:00",
        "load_average": [1.5, 2.25], "budget_seconds": 330.0, "quick": False,
        "order": ["dbm", "winattn", "vim"], "main_block": "dbm", "features_seconds": 4.2,
        "total_seconds": 324.0,
        "blocks": {
            "dbm": {"tiou": [0.3, 0.4, 0.5, 0.6, 0.7], "mAP": [0.71, 0.6789, 0.6123, 0.5, 0.4],
                    "average_mAP": 0.58024, "train_eval_seconds": 147.4, "resumed": False},
            "winattn": {"tiou": [0.3, 0.4, 0.5, 0.6, 0.7], "mAP": [0.6, 0.55, 0.5, 0.45, 0.4],
                        "average_mAP": 0.5, "train_eval_seconds": 149.0, "resumed": True},
            "vim": {"skipped": "it would overrun the 330s budget"},
        },
    }
    record.update(changes)
    return record


def test_readme_demo_section_is_the_committed_record():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert demo_record.region(readme) == demo_record.expected_region(), (
        "README's demo section and docs/demo_last_run.json disagree: refresh with "
        f"`{demo_record.REFRESH}` (or `python tools/demo_record.py docs/demo_last_run.json`)")


def test_render_holds_every_number_of_the_record():
    text = demo_record.render(fabricated_record())
    for cell in ("71.00", "67.89", "61.23", "58.02", "147s", "149s", "Test CPU 9000", "3 cores",
                 "5.4 min", "features 4 s", "load average 1.50 and 2.25", "budget 330 s",
                 "dbm mAP@0.5 = 61.23%", "vim      skipped: it would overrun the 330s budget",
                 "winattn 149 s (resumed: this part only)", "2026-01-02"):
        assert cell in text, cell
    assert "dbm         71.00   67.89   61.23   50.00   40.00   58.02    147s" in text


def test_update_readme_rewrites_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# title\nkept 60.02\n", "\n## next\nalso kept\n"
    readme.write_text(before + f"{demo_record.BEGIN} (generated) -->\nold 99.99\n"
                      + demo_record.END + after)
    record = tmp_path / "demo_last_run.json"
    record.write_text(json.dumps(fabricated_record()))
    docs = tmp_path / "docs_record.json"
    demo_record.update_readme(str(record), str(readme), str(docs))
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(demo_record.END + after)
    assert "99.99" not in text and demo_record.region(text) == demo_record.render(
        fabricated_record())
    assert json.loads(docs.read_text()) == fabricated_record()
    demo_record.update_readme(str(record), str(readme), str(docs))
    assert readme.read_text() == text  # idempotent


@pytest.mark.parametrize("record, message", [
    (fabricated_record(quick=True), "--quick"),
    (fabricated_record(blocks={"dbm": {"skipped": "x"}}), "has no result"),
    (fabricated_record(schema=0), "schema"),
])
def test_unusable_records_are_refused(record, message):
    with pytest.raises(demo_record.RecordError, match=message):
        demo_record.render(record)


def test_missing_markers_are_an_error():
    with pytest.raises(demo_record.RecordError, match="exactly one"):
        demo_record.replace_region("no markers here\n", "x")


FAKE_TRAIN = textwrap.dedent("""
    # stands in for train.py: a new run waits for SIGINT (then exits 130 like train.py after
    # its checkpoint); --resume finishes the run with a metrics.json
    import json, os, signal, sys, time
    args = sys.argv[1:]
    if "--resume" in args:
        run = args[args.index("--resume") + 1]
        metrics = {"tiou": [0.3, 0.5, 0.7], "mAP": [0.5, 0.4, 0.3], "average_mAP": 0.4}
        json.dump(metrics, open(os.path.join(run, "metrics.json"), "w"))
        sys.exit(0)
    out = [a.split("=", 1)[1] for a in args if a.startswith("output_folder=")][0]
    run = os.path.join(out, os.path.basename(args[0])[:-5] + "_demo")
    os.makedirs(run, exist_ok=True)
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    open(os.path.join(run, "last.pth"), "w").close()
    time.sleep(60)
    sys.exit(3)
""")

WRAPPER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from tools import demo
    demo.TRAIN = {fake!r}
    demo.ensure_features = lambda: None
    sys.exit(demo.main(["--blocks", "dbm", "--out", {out!r}]))
""")


def test_demo_interrupt_resume_and_reuse(tmp_path):
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    out = tmp_path / "out"
    (tmp_path / "wrapper.py").write_text(WRAPPER.format(
        repo=REPO, fake=str(tmp_path / "fake_train.py"), out=str(out)))
    cmd = [sys.executable, str(tmp_path / "wrapper.py")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = out / "demo_thumos_dbm_demo" / "last.pth"
    deadline = time.time() + 60
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the demo
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [
        "[demo] interrupted; run the same command again to continue (finished blocks are kept, "
        "the interrupted one resumes from its last.pth)"], stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "--resume" in again.stdout and "dbm mAP@0.5 = 40.00%" in again.stdout
    record = json.loads((out / "demo_last_run.json").read_text())
    assert record["blocks"]["dbm"]["resumed"] is True and record["total_seconds"] is not None
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and "already trained" in third.stdout, third.stdout


def test_a_block_stopped_after_its_final_evaluation_is_reused(tmp_path):
    """Ctrl-C after train.py wrote metrics.json but before the demo recorded it: the rerun takes
    the run's metrics.json (a resume would have nothing left to train and fail)."""
    from tools import demo

    out = tmp_path / "out"
    run = out / "demo_thumos_dbm_demo"
    run.mkdir(parents=True)
    (run / "last.pth").write_text("")
    metrics = {"tiou": [0.3, 0.5, 0.7], "mAP": [0.6, 0.5, 0.4], "average_mAP": 0.5}
    (run / "metrics.json").write_text(json.dumps(metrics))
    digest = demo.config_digest("configs/demo_thumos_dbm.yaml", [f"output_folder={out}"])
    record = fabricated_record(blocks={"dbm": {"digest": digest, "run_folder": str(run)}},
                               order=["dbm"], quick=False)
    (out / "demo_last_run.json").write_text(json.dumps(record))
    (tmp_path / "never.py").write_text("import sys; sys.exit(3)  # train.py must not run\n")
    (tmp_path / "wrapper.py").write_text(WRAPPER.format(
        repo=REPO, fake=str(tmp_path / "never.py"), out=str(out)))
    done = subprocess.run([sys.executable, str(tmp_path / "wrapper.py")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "already trained" in done.stdout and "dbm mAP@0.5 = 50.00%" in done.stdout


@pytest.mark.parametrize("budget, trained", [(330, ["dbm"]), (400, ["dbm", "winattn"]),
                                             (600, ["dbm", "winattn", "vim"])])
def test_default_budget_sentence_follows_the_demos_own_rule(budget, trained, monkeypatch):
    """The README's 'with the default budget ... trains X' is what demo.run_blocks does with
    these block times (a fake clock advanced by each block's recorded time)."""
    from tools import demo

    times = {"dbm": 171.0, "winattn": 182.0, "vim": 193.0}
    clock = [0.0]

    def fake_train(block, args, record):
        clock[0] += times[block]
        return {"train_eval_seconds": times[block]}

    monkeypatch.setattr(demo, "train_block", fake_train)
    monkeypatch.setattr(demo, "time", types.SimpleNamespace(time=lambda: clock[0]))
    monkeypatch.setattr(demo, "atomic_write_json", lambda path, data: None)
    record = {"blocks": {}}
    demo.run_blocks(argparse.Namespace(blocks=list(times), budget=budget), record, "unused")
    assert [b for b, r in record["blocks"].items() if "skipped" not in r] == trained
    recorded = fabricated_record(blocks={b: {"train_eval_seconds": t} for b, t in times.items()})
    assert demo_record.default_budget_blocks(recorded, budget) == trained

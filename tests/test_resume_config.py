"""Self-contained resume (issue 15 items 1, 5, 8): the run is rebuilt from the config stored in
its checkpoint, --opts on resume may change only the safe keys, the printed resume command
works, a finished run says so, eval.py keeps the stored geometry, and damaged checkpoints give
one clear error naming the file and key.

One tiny run (4 training videos, batch 2: 2 epochs x 2 iterations) is trained with --opts,
stopped by SIGINT after its first step and resumed with the command it printed.
"""

import json
import os
import re
import shlex
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import process_state_restored
from tests.test_resume_exact import make_tiny_config

RUN_OPTS = ["opt.epochs=2", "model.n_mha_win_size=3", "opt.eval_start_epoch=0"]


@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory):
    """(config, run folder, the printed resume command, the resumed run's exit status)."""
    import libs.engine.train_loop as tl
    import train

    root = tmp_path_factory.mktemp("resume_cfg")
    config = make_tiny_config(root, num_train=4, opt={"ckpt_every_iters": 0})
    real_step = tl.train_step

    def step(state, *args, **kwargs):
        out = real_step(state, *args, **kwargs)
        if state.iteration == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag
        return out

    with pytest.MonkeyPatch.context() as mp, process_state_restored(mp, threads=1):
        mp.setattr(tl, "train_step", step)
        err = _main_err(mp, [str(config), "--name", "r", "--device", "cpu", "--opts", *RUN_OPTS])
        assert err[0] == 130, err[1][-2000:]
        hint = re.search(r"resume with: (.+)$", err[1], re.M).group(1)
        mp.setattr(tl, "train_step", real_step)
        argv = shlex.split(hint)
        assert argv[:3] == ["python", "train.py", "--resume"] and len(argv) == 4
        status = train.main(argv[2:])
    return config, root / "runs" / "tiny_r", hint, status


def _main_err(mp, argv):
    """train.main(argv) with stderr captured: (status, stderr text)."""
    import io
    import sys

    import train

    buf = io.StringIO()
    mp.setattr(sys, "stderr", buf)
    try:
        return train.main(argv), buf.getvalue()
    finally:
        mp.setattr(sys, "stderr", sys.__stderr__)


def _train(argv, capsys):
    import train

    status = train.main(argv)
    return status, capsys.readouterr().err


def test_the_printed_resume_command_continues_the_run_with_its_stored_config(stopped_and_resumed):
    config, run, hint, status = stopped_and_resumed
    assert status == 0 and hint.endswith(str(run / "last.pth"))
    ckpt = torch.load(run / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 3  # opt.epochs=2 + 1 warmup: the --opts of the first command held
    assert ckpt["config"]["model"]["n_mha_win_size"] == 3
    history = [json.loads(line) for line in (run / "val_history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]  # opt.eval_start_epoch=0 held too


def test_a_finished_run_says_nothing_is_left_and_exits_non_zero(
    stopped_and_resumed, in_process, capsys, tmp_path
):
    _, run, _, _ = stopped_and_resumed
    before = (run / "last.pth").read_bytes()
    status, err = _train(["--resume", str(run), "--device", "cpu"], capsys)
    assert status == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: nothing left to train") and "opt.epochs=N (N > 2)" in line
    assert "has finished 3 epoch(s) and the config asks for 2 epochs + 1 warmup = 3 epochs" in line
    assert f"python eval.py {run / 'config.yaml'} {run / 'last.pth'}" in line
    assert (run / "last.pth").read_bytes() == before
    # the evaluation it points to works as printed
    import eval as eval_cli

    evaluate = shlex.split(line.split("to evaluate it: ")[1])
    assert evaluate[:2] == ["python", "eval.py"]
    out = ["--out", str(tmp_path / "r.json"), "--json", str(tmp_path / "m.json"), "--device", "cpu"]
    assert eval_cli.main([*evaluate[2:], *out]) == 0 and (tmp_path / "m.json").is_file()


@pytest.mark.parametrize(
    "extra, keys",
    [
        (["--opts", "model.embd_dim=16"], ["--opts may not change model.embd_dim (to '16') of a run"]),
        (["--opts", "opt.learning_rate=0.5", "seed=3"],
         ["--opts may not change opt.learning_rate: 0.01 -> 0.5; seed: 1234567891 -> 3 of a run"]),
        (["--opts", "dataset.max_seq_len=64"], ["dataset.max_seq_len", "model.max_seq_len"]),
    ],
)
def test_resume_refuses_opts_outside_the_safe_keys(stopped_and_resumed, in_process, capsys, extra, keys):
    _, run, _, _ = stopped_and_resumed
    status, err = _train(["--resume", str(run), "--device", "cpu", *extra], capsys)
    line = err.strip().splitlines()[-1]
    assert status == 2 and line.startswith("error: --resume ") and "Traceback" not in err
    assert all(k in line for k in keys) and "opt.epochs" in line and "Start a new run" in line


def test_resume_with_a_config_that_disagrees_names_the_keys(stopped_and_resumed, in_process, capsys):
    config, run, _, _ = stopped_and_resumed
    status, err = _train([str(config), "--resume", str(run), "--device", "cpu"], capsys)
    line = err.strip().splitlines()[-1]
    assert status == 2 and "leave CONFIG out" in line
    assert "differs from the config stored in the run in model.n_mha_win_size (model.n_mha_win_size: 3 -> 5)" in line
    # the same CONFIG with the run's --opts agrees (opt.epochs is the stored 2 either way)
    status, err = _train([str(config), "--resume", str(run), "--device", "cpu",
                          "--opts", *RUN_OPTS, "opt.epochs=1"], capsys)  # fmt: skip
    assert status == 2 and "nothing left to train" in err  # checked, then no epoch left


def test_eval_uses_the_stored_geometry_and_refuses_a_conflicting_override(
    stopped_and_resumed, in_process, capsys, tmp_path
):
    import eval as eval_cli

    config, run, _, _ = stopped_and_resumed
    out = ["--out", str(tmp_path / "r.json"), "--json", str(tmp_path / "m.json"), "--device", "cpu"]
    status = eval_cli.main([str(config), str(run), *out, "--opts", "dataset.feat_stride=4"])
    err = capsys.readouterr().err
    assert status == 2 and "dataset.feat_stride" in err.strip().splitlines()[-1]
    assert "always come from the checkpoint" in err and not (tmp_path / "r.json").exists()
    # CONFIG lacks the run's model.n_mha_win_size=3: the stored value is used, with a warning
    assert eval_cli.main([str(config), str(run), *out, "--opts", "test.max_seg_num=5"]) == 0
    err = capsys.readouterr().err
    assert "model.n_mha_win_size: 3 -> 5" in err and "using the stored values" in err
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert results and all(len(v) <= 5 for v in results.values())  # test.* stays overridable


def test_resume_with_more_epochs_trains_them(stopped_and_resumed, in_process, capsys):
    _, run, _, _ = stopped_and_resumed
    status, err = _train(["--resume", str(run), "--device", "cpu", "--opts", "opt.epochs=3",
                          "opt.print_freq=5", "loader.num_workers=0"], capsys)  # fmt: skip
    assert status == 0, err[-2000:]
    ckpt = torch.load(run / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["config"]["opt"]["epochs"] == 3
    assert "config differs from the one stored in" in (run / "log.txt").read_text()


def test_train_needs_a_config_or_resume(capsys):
    import train

    with pytest.raises(SystemExit) as info:
        train.main([])
    assert info.value.code == 2
    assert "error: give a CONFIG to start a run, or --resume RUN to continue one" in capsys.readouterr().err


def test_infer_uses_the_stored_geometry_and_refuses_a_conflicting_override(
    stopped_and_resumed, in_process, capsys, caplog, tmp_path
):
    from libs.commands import infer

    config, run, _, _ = stopped_and_resumed
    feats = config.parent / "feats" / "v0.pt"
    argv = [str(config), str(run), str(feats), "--default-fps", "30", "--device", "cpu",
            "--out", str(tmp_path / "d.json")]  # fmt: skip
    assert infer.main([*argv, "--opts", "model.n_mha_win_size=5"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--opts model.n_mha_win_size conflicts with the config stored in the checkpoint" in line
    assert infer.main(argv) == 0 and (tmp_path / "d.json").is_file()
    assert "model.n_mha_win_size: 3 -> 5" in caplog.text  # CONFIG's value replaced, with a warning


def test_the_safe_keys_are_documented_where_users_look():
    import libs.commands.train as train_cmd
    from libs.commands.train import build_parser
    from libs.engine.stored_config import RESUME_SAFE_KEYS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    help_text = " ".join(build_parser().format_help().split())
    for key in RESUME_SAFE_KEYS:
        assert key in " ".join(train_cmd.__doc__.split()), key
        assert f"`{key}`" in docs and key in help_text, key


def test_eval_geometry_rules_without_a_run(caplog):
    """Published checkpoints (no stored config) and stored configs of another schema version
    keep the command-line config; a CONFIG value is replaced by the stored one."""
    from libs.core.config import config_to_dict, load_config
    from libs.engine.stored_config import apply_stored_geometry

    cfg = load_config(data={"dataset": {"feat_stride": 4}, "test": {"nms_sigma": 0.9}})
    assert apply_stored_geometry(cfg, None, "published.pth.tar") is cfg
    assert apply_stored_geometry(cfg, {"model": {"no_such_key": 1}}, "old.pth") is cfg
    assert "old.pth: the config stored in it does not load" in caplog.text
    stored = config_to_dict(load_config(data={"dataset": {"feat_stride": 8}}))
    out = apply_stored_geometry(cfg, stored, "ours.pth")
    assert out.dataset.feat_stride == 8 and out.test.nms_sigma == 0.9  # test.* stays the CLI's


def test_the_run_stores_its_thread_count_and_the_resume_uses_it(stopped_and_resumed):
    """Float sums depend on the thread count: the run stores the count it used (config.yaml and
    the checkpoint), so its resume continues with that count whatever the load is then."""
    import yaml

    _, run, _, status = stopped_and_resumed
    assert status == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["threads"] == 1
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["config"]["threads"] == 1
    log = (run / "log.txt").read_text()
    assert "CPU threads: 1 (config key threads)" in log  # the resume took the stored count


def test_moved_annotations_may_be_given_on_resume(stopped_and_resumed, tmp_path):
    """A run with a relative json_file resumed from another folder: --opts dataset.json_file
    points at the same annotations (like feat_folder for moved features)."""
    import shutil

    from libs.engine.stored_config import resume_config

    _, run, _, _ = stopped_and_resumed
    stored = torch.load(run / "last.pth", weights_only=True)["config"]
    moved = tmp_path / "anno.json"
    shutil.copyfile(stored["dataset"]["json_file"], moved)
    cfg = resume_config(stored, str(run / "last.pth"), [f"dataset.json_file={moved}"])
    assert cfg.dataset.json_file == str(moved) and cfg.opt.epochs == stored["opt"]["epochs"]

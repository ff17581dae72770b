"""torchrun with 2 Gloo processes on CPU gives the weights of 1 process with the same global batch.

`loader.batch_size` (4) is the global batch: each rank loads 2 videos per step, and the
DistributedSampler gives the two ranks together the same 4 videos a single process gets. The
loss normaliser is all-reduced (num_pos of the global batch), DDP averages the gradients, and
the engine rescales them, so the update is the single-process one up to float rounding. Crops
are off (they would draw from each rank's own RNG), so is drop path; SGD without clipping keeps
the comparison sensitive to a wrongly scaled gradient (see test_accumulate.py).
"""

import os
import subprocess
import sys

import pytest
import torch

from tests.test_resume_exact import REPO, in_process, make_tiny_config  # noqa: F401  (fixture)

OPTS = [
    "dataset.crop_ratio=null",
    "model.block.args.drop_path=0.0",
    "opt.type=SGD",
    "opt.learning_rate=0.05",
    "train.clip_grad_l2norm=-1",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_tiny_config(
        tmp_path_factory.mktemp("ddp"),
        loader={"batch_size": 4, "num_workers": 0},
        opt={"ckpt_every_iters": 0},
    )


def test_two_gloo_processes_match_one(workspace, in_process):  # noqa: F811
    import train

    assert train.main([str(workspace), "--name", "one", "--device", "cpu", "--opts", *OPTS]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "train.py", str(workspace), "--name", "two", "--device", "cpu", "--opts", *OPTS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    runs = workspace.parent / "runs"
    assert out.stdout.count("run folder:") == 1  # rank 0 alone reports
    one = torch.load(runs / "tiny_one" / "last.pth", weights_only=True)
    two = torch.load(runs / "tiny_two" / "last.pth", weights_only=True)
    assert two["iteration"] == one["iteration"] == 4 and len(two["rng_per_rank"]) == 2
    norm_one, norm_two = float(one["model"]["loss_normalizer"]), float(two["model"]["loss_normalizer"])
    assert norm_two == pytest.approx(norm_one, rel=1e-12)
    for key in ("model", "model_ema"):
        for name, value in one[key].items():
            torch.testing.assert_close(
                two[key][name], value, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}"
            )
    assert (runs / "tiny_two" / "metrics.json").is_file()
    assert not (runs / "tiny_two_1").exists()  # one run folder, made by rank 0

"""tools/check_env.py runs every available backend against the reference and fails (exit 1) only
when a backend that auto picks is wrong or crashes; GPU rows are exercised with fake installs."""
import json
import sys
import types

import pytest
import torch

from libs.ops import _ext, _gpu, conv, scan
from tests import gpu_fakes
from tests.gpu_fakes import MAMBA_LAYOUTS, FakeScanKernel
from libs.commands import check_env


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    def clear():
        gpu_fakes.purge()
        _gpu.reset()
        _ext._noted.clear()
    clear()
    monkeypatch.setitem(sys.modules, "libs.ops.scan_triton", None)
    yield
    clear()


def rows_by_key(rows):
    return {(r.op, r.backend, r.device): r for r in rows}


def test_cpu_checks_pass_and_exit_zero(capsys):
    assert check_env.main([]) == 0
    out = capsys.readouterr().out
    if _ext.ext_available():
        assert "selective_scan ext      cpu     yes   PASS" in out
    assert "No module named 'mamba_ssm'" in out  # the import error text of what is missing


def test_json_lists_every_check(capsys):
    assert check_env.main(["--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert {(c["op"], c["backend"]) for c in checks} >= {("selective_scan", "ext"),
                                                        ("selective_scan", "cuda"),
                                                        ("causal_conv1d", "cuda"), ("nms", "cuda")}


@pytest.mark.skipif(not scan.ext_has_scan(), reason="libs._C has no selective scan")
def test_wrong_auto_backend_fails_with_exit_one(monkeypatch, capsys):
    real = _ext._C

    def wrong_fwd(*args):
        out, last, ckpt = real.selective_scan_fwd(*args)
        return out * 1.01, last, ckpt
    monkeypatch.setattr(_ext, "_C", types.SimpleNamespace(
        **{n: getattr(real, n) for n in dir(real) if not n.startswith("__")}))
    monkeypatch.setattr(_ext._C, "selective_scan_fwd", wrong_fwd)
    assert check_env.main([]) == 1
    out = capsys.readouterr().out
    assert "FAILED: auto picks selective_scan backend 'ext' on cpu" in out


def gpu_rows(monkeypatch, kernel):
    monkeypatch.setattr(scan, "_on_gpu", lambda x: True)
    monkeypatch.setattr(conv, "_on_gpu", lambda x: True)
    gpu_fakes.install(monkeypatch, MAMBA_LAYOUTS["2.3.x"], {"selective_scan_cuda": kernel})
    return rows_by_key(check_env.run_checks(gpu=torch.device("cpu")))


def test_gpu_rows_with_a_working_kernel(monkeypatch):
    rows = gpu_rows(monkeypatch, FakeScanKernel())
    row = rows[("selective_scan", "cuda", "cpu")]
    assert row.result == "PASS" and row.auto and row.max_err < 1e-6
    assert rows[("causal_conv1d", "cuda", "cpu")].result == "MISSING"
    assert "No module named 'causal_conv1d'" in rows[("causal_conv1d", "cuda", "cpu")].detail


def test_gpu_kernel_that_crashes_is_a_failure(monkeypatch, capsys):
    kernel = FakeScanKernel(fail="CUDA error: no kernel image is available")
    row = gpu_rows(monkeypatch, kernel)[("selective_scan", "cuda", "cpu")]
    assert row.result == "FAIL" and "no kernel image" in row.detail and row.auto
    assert check_env.main([], gpu=torch.device("cpu")) == 1


def test_json_to_a_file_keeps_the_table(tmp_path, capsys):
    out = tmp_path / "env.json"
    assert check_env.main(["--json", str(out)]) == 0
    assert "backend" in capsys.readouterr().out  # the table as usual
    assert json.loads(out.read_text())["checks"]

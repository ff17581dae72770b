"""GPU kernel probes and dispatch, on CPU: fake mamba-ssm / causal-conv1d installs, one per
published layout (tests/gpu_fakes.py), decide which backend runs, when it falls back, what it
warns, and what arguments reach the compiled kernels."""
import logging
import sys
import types

import pytest
import torch

from libs.ops import _ext, _gpu, conv, scan
from libs.ops.conv import causal_conv1d, causal_conv1d_ref
from libs.ops.scan import installed_gpu_backends, scan_backends, selective_scan, selective_scan_ref
from tests import gpu_fakes
from tests.gpu_fakes import CONV_LAYOUTS, MAMBA_LAYOUTS, FakeConvKernel, FakeScanKernel


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """No probe, self-test or once-log state leaks between tests; CPU tensors count as GPU ones
    and no real scan_triton module takes part unless a test installs one."""
    def clear():
        gpu_fakes.purge()
        _gpu.reset()
        _ext._noted.clear()
        _ext._logged_backends.clear()
    clear()
    monkeypatch.setattr(scan, "_on_gpu", lambda x: True)
    monkeypatch.setattr(conv, "_on_gpu", lambda x: True)
    monkeypatch.setitem(sys.modules, "libs.ops.scan_triton", None)  # "not importable"
    monkeypatch.delenv(scan.ENV_BACKEND, raising=False)
    monkeypatch.delenv(conv.ENV_BACKEND, raising=False)
    yield
    clear()


def scan_inputs(dtype=torch.float32, length=12, groups=None):
    g = torch.Generator().manual_seed(1)
    bc = (2, 3, length) if groups is None else (2, groups, 3, length)
    x = dict(u=torch.randn(2, 4, length, generator=g), delta=torch.randn(2, 4, length, generator=g),
             A=-torch.rand(4, 3, generator=g) - 0.2, B=torch.randn(*bc, generator=g),
             C=torch.randn(*bc, generator=g), D=torch.randn(4, generator=g),
             z=torch.randn(2, 4, length, generator=g), delta_bias=torch.randn(4, generator=g))
    return {k: v.to(dtype) if k not in ("A", "D", "delta_bias") or dtype == torch.float64 else v
            for k, v in x.items()}


def install_mamba(monkeypatch, layout, kernel=None, errors=None):
    kernel = FakeScanKernel() if kernel is None else kernel
    modules = {} if kernel is False else {"selective_scan_cuda": kernel}
    gpu_fakes.install(monkeypatch, MAMBA_LAYOUTS[layout], modules, errors)
    return kernel


def install_conv(monkeypatch, layout, kernel=None):
    kernel = FakeConvKernel() if kernel is None else kernel
    gpu_fakes.install(monkeypatch, CONV_LAYOUTS[layout], {"causal_conv1d_cuda": kernel})
    return kernel


# ------------------------------------------------------------------------- mamba-ssm layouts
@pytest.mark.parametrize("layout", ["1.2.x", "2.2.x", "2.3.x"])
def test_released_layouts_run_the_kernel(monkeypatch, layout):
    kernel = install_mamba(monkeypatch, layout)
    assert scan_backends()["cuda"] == "cuda"
    x = {k: v.requires_grad_() for k, v in scan_inputs().items()}
    out = selective_scan(**x, delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**x, delta_softplus=True))
    out.sum().backward()
    assert all(v.grad is not None for v in x.values())
    assert len(kernel.calls) == 2  # the self-test, then the real call
    call = kernel.calls[-1]
    assert call["B"].shape == (2, 1, 3, 12) and call["delta_softplus"] is True
    assert call["D"].dtype == torch.float32 and call["delta_bias"].dtype == torch.float32


def test_current_source_without_compiled_kernel_falls_back(monkeypatch, caplog):
    install_mamba(monkeypatch, "current", kernel=False)
    fn, why = _gpu.probe("mamba_ssm")
    assert fn is None and "MAMBA_KEEP_CUDA_BUILD" in why
    with caplog.at_level(logging.WARNING):
        out = selective_scan(**scan_inputs(), delta_softplus=True)
        selective_scan(**scan_inputs(), delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**scan_inputs(), delta_softplus=True))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "MAMBA_KEEP_CUDA_BUILD" in warnings[0]
    with pytest.raises(RuntimeError, match="MAMBA_KEEP_CUDA_BUILD"):
        selective_scan(**scan_inputs(), delta_softplus=True, backend="cuda")


def test_current_source_with_compiled_kernel_runs_it(monkeypatch):
    kernel = install_mamba(monkeypatch, "current")
    selective_scan(**scan_inputs(), delta_softplus=True)
    assert len(kernel.calls) == 2


def test_2x_without_triton_reports_the_import_error(monkeypatch):
    install_mamba(monkeypatch, "2.3.x")
    monkeypatch.setitem(sys.modules, "triton", None)
    fn, why = _gpu.probe("mamba_ssm")
    assert fn is None and "triton" in why


def test_extension_built_for_another_torch(monkeypatch):
    undefined = "selective_scan_cuda.so: undefined symbol: _ZN3c1017RegisterOperators"
    install_mamba(monkeypatch, "1.2.x", kernel=False, errors={"selective_scan_cuda": undefined})
    fn, why = _gpu.probe("mamba_ssm")
    assert fn is None and "undefined symbol" in why
    assert scan_backends()["cuda"] == "torch"


def test_first_call_failure_warns_once_and_falls_back(monkeypatch, caplog):
    kernel = install_mamba(monkeypatch, "2.3.x",
                           FakeScanKernel(fail="CUDA error: no kernel image is available"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            out = selective_scan(**scan_inputs(), delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**scan_inputs(), delta_softplus=True))
    assert len(kernel.calls) == 1  # only the self-test; the result is cached per device
    warned = [r.getMessage() for r in caplog.records if "failed its first call" in r.getMessage()]
    assert len(warned) == 1
    assert "no kernel image" in warned[0] and "MAMBA_FORCE_BUILD" in warned[0]
    assert "falling back" in warned[0]


def test_first_call_with_wrong_numbers_falls_back(monkeypatch, caplog):
    kernel = install_mamba(monkeypatch, "1.2.x")
    real = gpu_fakes.fake_selective_scan_fn(kernel)
    iface = sys.modules.get("mamba_ssm.ops.selective_scan_interface")
    if iface is None:
        _gpu.probe("mamba_ssm")
        iface = sys.modules["mamba_ssm.ops.selective_scan_interface"]
    monkeypatch.setattr(iface, "selective_scan_fn", lambda *a, **k: real(*a, **k) * 1.5)
    _gpu.reset()
    with caplog.at_level(logging.WARNING):
        selective_scan(**scan_inputs(), delta_softplus=True)
    assert any("max relative error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("case", ["float64", "dstate", "mixed"])
def test_inputs_outside_kernel_limits_fall_back(monkeypatch, caplog, case):
    kernel = install_mamba(monkeypatch, "2.3.x")
    x = scan_inputs(torch.float64 if case == "float64" else torch.float32)
    if case == "dstate":
        x.update(A=-torch.rand(4, 300) - 0.1, B=torch.randn(2, 300, 12), C=torch.randn(2, 300, 12))
    if case == "mixed":
        x["delta"] = x["delta"].to(torch.bfloat16)
    with caplog.at_level(logging.INFO, logger="libs.ops._ext"):
        out = selective_scan(**x, delta_softplus=True)
        selective_scan(**x, delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**x, delta_softplus=True))
    assert kernel.calls == []
    notes = [r.getMessage() for r in caplog.records if "cannot take these inputs" in r.getMessage()]
    assert len(notes) == 1
    with pytest.raises(ValueError, match="cannot take these inputs"):
        selective_scan(**x, delta_softplus=True, backend="cuda")


def test_bf16_call_contract(monkeypatch):
    kernel = install_mamba(monkeypatch, "2.2.x")
    x = scan_inputs(torch.bfloat16, groups=2)
    x["u"] = x["u"].transpose(1, 2).contiguous().transpose(1, 2)  # stride(-1) != 1
    x["D"] = x["D"].to(torch.bfloat16)  # a half D is cast to float32 for the kernel
    selective_scan(**x, delta_softplus=True)
    call = kernel.calls[-1]
    assert call["u"].dtype == torch.bfloat16 and call["u"].stride(-1) == 1
    assert call["B"].shape == (2, 2, 3, 12) and call["D"].dtype == torch.float32


def test_time_invariant_bc_reaches_the_kernel(monkeypatch):
    kernel = install_mamba(monkeypatch, "1.2.x")
    x = dict(scan_inputs(), B=torch.randn(4, 3), C=torch.randn(4, 3))
    out = selective_scan(**x, delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**x, delta_softplus=True))
    assert kernel.calls[-1]["B"].shape == (4, 3)


# --------------------------------------------------------------------------------- Triton
def install_triton(monkeypatch, usable=True, reason=""):
    calls = []

    def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                              delta_softplus=False, return_last_state=False):
        calls.append(u)
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)
    mod = types.ModuleType("libs.ops.scan_triton")
    mod.selective_scan_triton = selective_scan_triton
    mod.triton_status = lambda: (usable, reason)
    monkeypatch.setitem(sys.modules, "libs.ops.scan_triton", mod)
    return calls


def test_triton_when_mamba_is_missing(monkeypatch):
    calls = install_triton(monkeypatch)
    assert scan_backends()["cuda"] == "triton" and list(installed_gpu_backends()) == ["triton"]
    out = selective_scan(**scan_inputs(), delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**scan_inputs(), delta_softplus=True))
    assert len(calls) == 2  # self-test + call


def test_mamba_before_triton(monkeypatch):
    kernel = install_mamba(monkeypatch, "2.3.x")
    calls = install_triton(monkeypatch)
    assert list(installed_gpu_backends()) == ["cuda", "triton"]  # auto's order
    selective_scan(**scan_inputs(), delta_softplus=True)
    assert len(kernel.calls) == 2 and calls == []


def test_triton_unusable_gives_torch_with_its_reason(monkeypatch, caplog):
    install_triton(monkeypatch, usable=False, reason="triton is not installed")
    with caplog.at_level(logging.WARNING):
        selective_scan(**scan_inputs(), delta_softplus=True)
    assert any("triton is not installed" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        selective_scan(**scan_inputs(), delta_softplus=True, backend="triton")


def test_triton_module_absent(monkeypatch):
    fn, why = _gpu.probe("triton")
    assert fn is None and "not" in why


# ---------------------------------------------------------------------------- causal-conv1d
def conv_inputs(width=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(2)
    return (torch.randn(2, 8, 10, generator=g).to(dtype),
            torch.randn(8, width, generator=g).to(dtype), torch.randn(8, generator=g).to(dtype))


@pytest.mark.parametrize("layout", ["1.1", "1.2-1.5", "1.6-1.7"])
def test_conv_layouts_run_the_kernel(monkeypatch, layout):
    kernel = install_conv(monkeypatch, layout)
    x, w, b = conv_inputs()
    x = x.transpose(1, 2).contiguous().transpose(1, 2)  # channel-last: we pass L-contiguous
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = causal_conv1d(*leaves, activation="silu")
    torch.testing.assert_close(out, causal_conv1d_ref(x, w, b, "silu"))
    out.sum().backward()
    assert len(kernel.calls) == 2
    call = kernel.calls[-1]
    assert call["x"].stride(2) == 1 and call["seq_idx"] is None and call["rest"][-1] is True


@pytest.mark.parametrize("width,dtype", [(5, torch.float32), (1, torch.float32),
                                         (4, torch.float64)])
def test_conv_outside_kernel_limits_falls_back(monkeypatch, width, dtype):
    kernel = install_conv(monkeypatch, "1.6-1.7")
    x, w, b = conv_inputs(width, dtype)
    torch.testing.assert_close(causal_conv1d(x, w, b, "silu"), causal_conv1d_ref(x, w, b, "silu"))
    assert kernel.calls == []
    with pytest.raises(ValueError, match="cannot take these inputs"):
        causal_conv1d(x, w, b, "silu", backend="cuda")


def test_conv_first_call_failure(monkeypatch, caplog):
    kernel = install_conv(monkeypatch, "1.2-1.5", FakeConvKernel(fail="CUDA error: invalid "
                                                                       "device function"))
    with caplog.at_level(logging.WARNING):
        causal_conv1d(*conv_inputs(), "silu")
        causal_conv1d(*conv_inputs(), "silu")
    assert len(kernel.calls) == 1
    warned = [r.getMessage() for r in caplog.records if "failed its first call" in r.getMessage()]
    assert len(warned) == 1 and "CAUSAL_CONV1D_FORCE_BUILD" in warned[0]


def test_conv_missing(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        causal_conv1d(*conv_inputs(), "silu")
    assert any("causal_conv1d does not import" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="causal-conv1d=="):
        causal_conv1d(*conv_inputs(), "silu", backend="cuda")


# ------------------------------------------------------------------------- forced defaults
def test_env_and_setter_force_the_default(monkeypatch):
    kernel = install_mamba(monkeypatch, "2.3.x")
    monkeypatch.setenv(scan.ENV_BACKEND, "torch")
    selective_scan(**scan_inputs(), delta_softplus=True)
    assert kernel.calls == []
    monkeypatch.setenv(scan.ENV_BACKEND, "nonsense")
    with pytest.raises(ValueError, match="LIBS_SCAN_BACKEND"):
        selective_scan(**scan_inputs())
    monkeypatch.delenv(scan.ENV_BACKEND)
    scan.set_default_backend("torch")
    try:
        selective_scan(**scan_inputs(), delta_softplus=True)
        assert kernel.calls == []
    finally:
        scan.set_default_backend(None)
    selective_scan(**scan_inputs(), delta_softplus=True)
    assert kernel.calls


def test_conv_env_forces_the_default(monkeypatch):
    kernel = install_conv(monkeypatch, "1.6-1.7")
    monkeypatch.setenv(conv.ENV_BACKEND, "torch")
    causal_conv1d(*conv_inputs(), "silu")
    assert kernel.calls == []

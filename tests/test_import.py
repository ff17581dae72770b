"""`import libs` and its subpackages work on a CPU-only machine with nothing compiled and no
mamba-ssm / causal-conv1d, and every name in each `__all__` exists."""
import importlib
import subprocess
import sys

import pytest

PACKAGES = ["libs", "libs.core.config", "libs.ops", "libs.modeling", "libs.modeling.blocks", "libs.datasets",
            "libs.evaluation", "libs.engine", "libs.inference", "libs.cli"]

# A fresh interpreter where libs._C, mamba_ssm and causal_conv1d cannot be imported.
_BLOCKED_IMPORTS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name in ("libs._C", "mamba_ssm", "causal_conv1d") or name.startswith(("mamba_ssm.", "causal_conv1d.")):
            raise ImportError(f"blocked for the test: {{name}}")
        return None
sys.meta_path.insert(0, _Block())
import torch, importlib
for name in {packages!r}:
    module = importlib.import_module(name)
    for attr in getattr(module, "__all__", []):
        assert hasattr(module, attr), f"{{name}}.__all__ lists missing {{attr}}"
import libs.ops
r = libs.ops.report()
assert r["libs._C built"] is False, r
assert r["selective_scan"]["cpu"] == "torch" and r["nms"]["nms_1d[cpu]"] == "torch", r
u = torch.randn(1, 3, 5)
out = libs.ops.selective_scan(u, torch.rand(1, 3, 5), -torch.rand(3, 4), torch.randn(1, 4, 5), torch.randn(1, 4, 5))
assert out.shape == (1, 3, 5)
print("ok")
"""


@pytest.mark.parametrize("name", PACKAGES)
def test_import_and_all(name):
    module = importlib.import_module(name)
    for attr in getattr(module, "__all__", []):
        assert hasattr(module, attr), f"{name}.__all__ lists missing {attr}"


def test_imports_without_extension_or_mamba():
    code = _BLOCKED_IMPORTS.format(packages=PACKAGES)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
    # exactly one warning about the missing extension, with the build command
    assert proc.stderr.count("libs._C is not built") == 1, proc.stderr
    assert "pip install --no-build-isolation --use-pep517 -e ." in proc.stderr

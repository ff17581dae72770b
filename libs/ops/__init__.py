"""The only package that touches compiled or optional kernels (libs._C, mamba-ssm, causal-conv1d).

One public function per op; each picks its backend by capability and tensor device
(`backend="auto"`), can be forced (`backend="torch" | "ext" | "cuda"`, and "triton" for the scan;
for a whole run: LIBS_SCAN_BACKEND / LIBS_CONV_BACKEND), and logs its choice once. GPU kernels
are used only when their compiled symbol is present and a first tiny call matches the reference
(`_gpu.py`); tools/check_env.py runs every backend once against the reference.
"""
import torch

from ._ext import ext_available
from .conv import causal_conv1d, causal_conv1d_ref, conv_backends
from .nms import batched_nms, nms_1d, nms_backends, soft_nms_1d
from .scan import scan_backends, selective_scan, selective_scan_ref

__all__ = [
    "batched_nms",
    "causal_conv1d",
    "causal_conv1d_ref",
    "nms_1d",
    "report",
    "selective_scan",
    "selective_scan_ref",
    "soft_nms_1d",
]


def report() -> dict:
    """What runs where: torch/CUDA versions, whether libs._C is built, each op's backend per device."""
    return {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "libs._C built": ext_available(),
        "selective_scan": scan_backends(),
        "causal_conv1d": conv_backends(),
        "nms": nms_backends(),
    }

// The Python module of the CUDA extension, `libs._C_cuda`: the CUDA twins of the 1-D NMS.
// Built by setup.py as a second extension, only when CUDA is available; the CPU extension
// libs._C never depends on it. Same contract as libs._C's nms_1d / soft_nms_1d, CUDA tensors.
#include <torch/extension.h>

#include "nms_1d.h"

namespace libs_ext {
namespace {

at::Tensor nms_1d_gpu(const at::Tensor& segs, const at::Tensor& scores, double iou_threshold) {
  check_nms_inputs("nms_1d", segs, scores);
  TORCH_CHECK(segs.is_cuda(), "nms_1d: libs._C_cuda takes CUDA tensors, got ", segs.device());
  return nms_1d_cuda(segs, scores, iou_threshold);
}

std::tuple<at::Tensor, at::Tensor> soft_nms_1d_gpu(const at::Tensor& segs,
                                                   const at::Tensor& scores, double iou_threshold,
                                                   double sigma, double min_score, int64_t method) {
  check_nms_inputs("soft_nms_1d", segs, scores);
  check_soft_nms_args(method, sigma);
  TORCH_CHECK(segs.is_cuda(), "soft_nms_1d: libs._C_cuda takes CUDA tensors, got ", segs.device());
  return soft_nms_1d_cuda(segs, scores, iou_threshold, sigma, min_score, method);
}

}  // namespace
}  // namespace libs_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "CUDA kernels of the ActionMamba TAL codebase (1-D NMS and soft-NMS).";
  m.def("nms_1d", &libs_ext::nms_1d_gpu, "Hard NMS on CUDA segs [N, 2] / scores [N] float32.",
        py::arg("segs"), py::arg("scores"), py::arg("iou_threshold"));
  m.def("soft_nms_1d", &libs_ext::soft_nms_1d_gpu,
        "Soft-NMS on CUDA tensors -> (kept indices [K] int64, dets [K, 3] float32).",
        py::arg("segs"), py::arg("scores"), py::arg("iou_threshold"), py::arg("sigma"),
        py::arg("min_score"), py::arg("method"));
}

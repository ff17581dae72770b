// 1-D (temporal) NMS on [N, 2] segments: declarations and the device dispatcher.
//
// Semantics are those of ActionFormer's csrc/nms_cpu.cpp (also used unchanged by
// video-mamba-suite), so detections match the published numbers element for element:
//   * IoU = inter / (area_i + area_j - inter), area = x2 - x1 + 1e-6, all in float32;
//   * hard NMS visits segments by descending score (at::sort, descending) and suppresses
//     later ones with IoU >= iou_threshold;
//   * soft-NMS repeatedly picks the first maximum of the remaining scores, decays the rest
//     (method 0 hard, 1 linear, 2 Gaussian) and drops a segment whose score falls below
//     min_score by swapping it with the last active one.
// The CPU extension libs._C binds the inline CPU entry points below (nms_1d_cpu.cpp). The CUDA
// twins live in csrc/cuda/ and form a second extension, libs._C_cuda (csrc/cuda/bindings_cuda.cpp),
// which setup.py builds only when CUDA is available: a failing nvcc never takes the CPU one down.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace libs_ext {

// segs [N, 2] float32, scores [N] float32 (CPU) -> kept indices [K] int64, descending score.
at::Tensor nms_1d_cpu(const at::Tensor& segs, const at::Tensor& scores, double iou_threshold);

// segs [N, 2] float32, scores [N] float32 (CPU) -> (kept indices [K] int64 in selection order,
// dets [K, 3] float32 = (x1, x2, decayed score) of each kept segment, same order).
std::tuple<at::Tensor, at::Tensor> soft_nms_1d_cpu(const at::Tensor& segs, const at::Tensor& scores,
                                                   double iou_threshold, double sigma,
                                                   double min_score, int64_t method);

// CUDA twins (csrc/cuda/nms_1d_cuda.cu), same contract with CUDA tensors; libs._C_cuda only.
at::Tensor nms_1d_cuda(const at::Tensor& segs, const at::Tensor& scores, double iou_threshold);

std::tuple<at::Tensor, at::Tensor> soft_nms_1d_cuda(const at::Tensor& segs,
                                                    const at::Tensor& scores,
                                                    double iou_threshold, double sigma,
                                                    double min_score, int64_t method);

// Shape / dtype / device checks shared by every backend; messages name the culprit.
inline void check_nms_inputs(const char* op, const at::Tensor& segs, const at::Tensor& scores) {
  TORCH_CHECK(segs.dim() == 2 && segs.size(1) == 2, op, ": segs must be [N, 2], got ",
              segs.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == segs.size(0), op,
              ": scores must be [N] with N = ", segs.size(0), ", got ", scores.sizes());
  TORCH_CHECK(segs.scalar_type() == at::kFloat && scores.scalar_type() == at::kFloat, op,
              ": segs and scores must be float32, got ", segs.scalar_type(), " and ",
              scores.scalar_type());
  TORCH_CHECK(segs.device() == scores.device(), op, ": segs on ", segs.device(),
              " but scores on ", scores.device());
}

inline void check_soft_nms_args(int64_t method, double sigma) {
  TORCH_CHECK(method >= 0 && method <= 2,
              "soft_nms_1d: method must be 0 (hard), 1 (linear) or 2 (gaussian), got ", method);
  TORCH_CHECK(method != 2 || sigma > 0, "soft_nms_1d: Gaussian soft-NMS needs sigma > 0, got ",
              sigma);
}

// The CPU entry points of libs._C. CUDA tensors belong to libs._C_cuda (libs/ops/nms.py routes).
inline at::Tensor nms_1d(const at::Tensor& segs, const at::Tensor& scores, double iou_threshold) {
  check_nms_inputs("nms_1d", segs, scores);
  TORCH_CHECK(!segs.is_cuda(), "nms_1d: libs._C is the CPU kernel; CUDA tensors go to "
                               "libs._C_cuda (libs.ops.nms_1d(backend='cuda'))");
  return nms_1d_cpu(segs, scores, iou_threshold);
}

inline std::tuple<at::Tensor, at::Tensor> soft_nms_1d(const at::Tensor& segs,
                                                      const at::Tensor& scores,
                                                      double iou_threshold, double sigma,
                                                      double min_score, int64_t method) {
  check_nms_inputs("soft_nms_1d", segs, scores);
  check_soft_nms_args(method, sigma);
  TORCH_CHECK(!segs.is_cuda(), "soft_nms_1d: libs._C is the CPU kernel; CUDA tensors go to "
                               "libs._C_cuda (libs.ops.soft_nms_1d(backend='cuda'))");
  return soft_nms_1d_cpu(segs, scores, iou_threshold, sigma, min_score, method);
}

}  // namespace libs_ext

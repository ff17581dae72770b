// Hard NMS and soft-NMS on [N, 2] temporal segments (CPU), and their Python bindings.
//
// Every floating-point step is written in the same order and precision as ActionFormer's
// nms_cpu.cpp, because a one-ulp difference in an IoU or a decayed score can flip a
// threshold test or a tie and change the detections. The pure-PyTorch twins in
// libs/ops/nms.py follow the same arithmetic; tests/test_ops_nms.py checks the parity.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ext_registry.h"
#include "nms_1d.h"

namespace libs_ext {
namespace {

// Segment areas with the reference's +1e-6, computed by ATen (not by hand) so the float
// rounding is bit-identical to the reference kernel and to the PyTorch twin.
at::Tensor segment_areas(const at::Tensor& x1, const at::Tensor& x2) { return x2 - x1 + 1e-6; }

// IoU of segment i (ix1, ix2, iarea) with segment (jx1, jx2, jarea), float32 throughout.
inline float segment_iou(float ix1, float ix2, float iarea, float jx1, float jx2, float jarea) {
  const float inter = std::max(0.f, std::min(ix2, jx2) - std::max(ix1, jx1));
  return inter / (iarea + jarea - inter);
}

// Soft-NMS decay factor for a segment overlapping the selected one by `ovr`.
inline float soft_weight(float ovr, float thr, float sigma, int64_t method) {
  if (method == 0) return ovr >= thr ? 0.f : 1.f;      // hard NMS
  if (method == 1) return ovr >= thr ? 1.f - ovr : 1.f;  // linear
  // Gaussian (the threshold is ignored). Most pairs do not overlap, and exp(-0) is exactly 1,
  // so skipping exp() there is bit-identical (and batched soft-NMS on THUMOS ~1.6x faster).
  if (ovr == 0.f) return 1.f;
  return std::exp(-(ovr * ovr) / sigma);
}

}  // namespace

at::Tensor nms_1d_cpu(const at::Tensor& segs_in, const at::Tensor& scores_in,
                      double iou_threshold) {
  TORCH_CHECK(segs_in.device().is_cpu(), "nms_1d_cpu: segs must be a CPU tensor");
  const int64_t n = segs_in.size(0);
  if (n == 0) return at::empty({0}, segs_in.options().dtype(at::kLong));
  const at::Tensor segs = segs_in.contiguous();
  const at::Tensor x1_t = segs.select(1, 0).contiguous();
  const at::Tensor x2_t = segs.select(1, 1).contiguous();
  const at::Tensor areas_t = segment_areas(x1_t, x2_t);
  // at::sort (not std::sort on our side): ties are then ordered exactly as in the reference.
  const at::Tensor order_t = std::get<1>(scores_in.contiguous().sort(0, /*descending=*/true));

  const float* x1 = x1_t.data_ptr<float>();
  const float* x2 = x2_t.data_ptr<float>();
  const float* areas = areas_t.data_ptr<float>();
  const int64_t* order = order_t.data_ptr<int64_t>();
  const float thr = static_cast<float>(iou_threshold);  // the reference compares in float32

  std::vector<char> suppressed(n, 0);  // indexed by rank in `order`
  std::vector<int64_t> keep;
  for (int64_t a = 0; a < n; ++a) {
    if (suppressed[a]) continue;
    const int64_t i = order[a];
    keep.push_back(i);
    for (int64_t b = a + 1; b < n; ++b) {
      if (suppressed[b]) continue;
      const int64_t j = order[b];
      if (segment_iou(x1[i], x2[i], areas[i], x1[j], x2[j], areas[j]) >= thr) suppressed[b] = 1;
    }
  }
  return at::tensor(keep, at::kLong);  // copies
}

std::tuple<at::Tensor, at::Tensor> soft_nms_1d_cpu(const at::Tensor& segs_in,
                                                   const at::Tensor& scores_in,
                                                   double iou_threshold, double sigma,
                                                   double min_score, int64_t method) {
  TORCH_CHECK(segs_in.device().is_cpu(), "soft_nms_1d_cpu: segs must be a CPU tensor");
  int64_t n = segs_in.size(0);  // number of still-active segments; shrinks while pruning
  at::Tensor dets_t = at::empty({n, 3}, segs_in.options());
  if (n == 0) return {at::empty({0}, segs_in.options().dtype(at::kLong)), dets_t};
  // Working copies: the arrays are permuted in place (selected segments move to the front).
  const at::Tensor segs = segs_in.contiguous();
  at::Tensor x1_t = segs.select(1, 0).clone(at::MemoryFormat::Contiguous);
  at::Tensor x2_t = segs.select(1, 1).clone(at::MemoryFormat::Contiguous);
  at::Tensor areas_t = segment_areas(x1_t, x2_t);
  at::Tensor sc_t = scores_in.clone(at::MemoryFormat::Contiguous);
  at::Tensor inds_t = at::arange(n, segs_in.options().dtype(at::kLong));

  float* x1 = x1_t.data_ptr<float>();
  float* x2 = x2_t.data_ptr<float>();
  float* areas = areas_t.data_ptr<float>();
  float* sc = sc_t.data_ptr<float>();
  int64_t* inds = inds_t.data_ptr<int64_t>();
  float* dets = dets_t.data_ptr<float>();
  const float thr = static_cast<float>(iou_threshold);
  const float sig = static_cast<float>(sigma);
  const float floor_score = static_cast<float>(min_score);

  auto move = [&](int64_t dst, int64_t src) {
    x1[dst] = x1[src], x2[dst] = x2[src], sc[dst] = sc[src];
    areas[dst] = areas[src], inds[dst] = inds[src];
  };
  for (int64_t i = 0; i < n; ++i) {
    // Linear scan with a strict '<': the FIRST maximum wins ties, as in the reference.
    int64_t best = i;
    for (int64_t pos = i + 1; pos < n; ++pos)
      if (sc[best] < sc[pos]) best = pos;
    const float ix1 = x1[best], ix2 = x2[best], iscore = sc[best], iarea = areas[best];
    const int64_t iind = inds[best];
    move(best, i);  // swap the maximum into slot i
    x1[i] = ix1, x2[i] = ix2, sc[i] = iscore, areas[i] = iarea, inds[i] = iind;
    dets[i * 3 + 0] = ix1, dets[i * 3 + 1] = ix2, dets[i * 3 + 2] = iscore;

    for (int64_t pos = i + 1; pos < n; ++pos) {
      const float ovr = segment_iou(ix1, ix2, iarea, x1[pos], x2[pos], areas[pos]);
      sc[pos] *= soft_weight(ovr, thr, sig, method);
      if (sc[pos] < floor_score) {
        // Drop it by moving the last active segment here; that one is decayed on the re-check.
        move(pos, n - 1);
        --n;
        --pos;
      }
    }
  }
  return {inds_t.slice(0, 0, n), dets_t.slice(0, 0, n)};
}

namespace {

namespace py = pybind11;

const ExtRegistrar kRegisterNms([](py::module& m) {
  m.def("nms_1d", &nms_1d, py::call_guard<py::gil_scoped_release>(),
        "Hard NMS on segs [N, 2] float32 / scores [N] float32 -> kept indices [K] int64 "
        "(descending score).",
        py::arg("segs"), py::arg("scores"), py::arg("iou_threshold"));
  m.def("soft_nms_1d", &soft_nms_1d, py::call_guard<py::gil_scoped_release>(),
        "Soft-NMS (method 0 hard, 1 linear, 2 Gaussian) -> (kept indices [K] int64 in selection "
        "order, dets [K, 3] float32 = x1, x2, decayed score).",
        py::arg("segs"), py::arg("scores"), py::arg("iou_threshold"), py::arg("sigma"),
        py::arg("min_score"), py::arg("method"));
});

}  // namespace
}  // namespace libs_ext

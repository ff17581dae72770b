// Causal depthwise conv1d (Mamba's short convolution) on the CPU: forward and backward.
//
// Per row r = (b, d) of x [B, D, L], kernel w = weight[d] of width K, time t = 0..L-1:
//   pre_t = bias_d + sum_k w_k x_{t-K+1+k}   (x_t = 0 for t < 0)
//   out_t = pre_t                  or  silu(pre_t) = pre_t sigmoid(pre_t)
// Backward, with g_t = dL/dpre_t = dout_t (times silu'(pre_t) = s (1 + pre (1 - s))):
//   dx_t = sum_k w_k g_{t+K-1-k}  (g_t = 0 for t >= L),  dw_k = sum_t g_t x_{t-K+1+k},
//   dbias = sum_t g_t.
//
// Design: one ATen parallel region per call (parallel_ranges: ~4 row ranges per thread, handed
// out dynamically); inside a row, time runs in SIMD vectors of W lanes. A vector of outputs
// reads the window x[t0-K+1 .. t0+W-1] straight from the row; only the first vector(s) (the
// window starts before t = 0) and the last (it ends past L) go through a small zero-padded copy.
// The backward recomputes pre from x (nothing but x is saved), writes g of the whole row to a
// per-thread buffer (L1/L2-resident), then makes dx and the per-row dw, dbias in a second pass
// over it; dw and dbias are summed over the batch after the region, in a fixed order.
// float32 uses the SIMD traits of scan_simd.h; float64 the scalar (W = 1) twin.
#include <vector>

#include "ext_registry.h"
#include "scan_simd.h"

namespace {

using namespace libs_simd;

// Raw view of one call. Rows of x and dout have stride 1 along L; other strides are free.
template <typename T>
struct Conv {
  int64_t batch = 0, dim = 1, len = 0, width = 1;
  const T *x = nullptr, *w = nullptr, *bias = nullptr;  // w [D, K] contiguous, bias [D] or null
  int64_t x_sb = 0, x_sd = 0;
  bool silu = false;
  const T* xrow(int64_t r) const { return x + (r / dim) * x_sb + (r % dim) * x_sd; }
};

// Per-thread scratch: the zero-padded window of an edge vector and g of one row (+ zero tail).
template <typename T>
struct ConvScratch {
  std::vector<T> edge, g;
  ConvScratch(int64_t len, int64_t width, int lanes)
      : edge(lanes + width), g((len + lanes - 1) / lanes * lanes + width + lanes, T(0)) {}
};

// KW > 0: the kernel width compiled in (the loops over taps unroll); KW = 0: any width.
template <class Tr, int KW>
struct ConvKernel {
  using T = typename Tr::T;
  using V = typename Tr::V;
  static constexpr int W = Tr::W;

  static int64_t taps(const Conv<T>& c) { return KW > 0 ? KW : c.width; }

  // p[i] = x[t0 - K + 1 + i] for i in [0, W + K - 1): the row itself where the window lies
  // inside [0, L), else a zero-padded copy in `edge`.
  static const T* window(const Conv<T>& c, const T* xr, int64_t t0, T* edge) {
    const int64_t k1 = taps(c) - 1, start = t0 - k1;
    if (start >= 0 && t0 + W <= c.len) return xr + start;
    for (int64_t i = 0; i < W + k1; ++i) {
      const int64_t t = start + i;
      edge[i] = (t >= 0 && t < c.len) ? xr[t] : T(0);
    }
    return edge;
  }

  static V pre_act(const Conv<T>& c, const T* wr, T bias, const T* p) {
    V acc = Tr::set1(bias);
    for (int64_t k = 0; k < taps(c); ++k) acc = Tr::fma(Tr::set1(wr[k]), Tr::load(p + k), acc);
    return acc;
  }

  static void forward_row(const Conv<T>& c, int64_t r, T* out, ConvScratch<T>& s) {
    const int64_t d = r % c.dim;
    const T* xr = c.xrow(r);
    const T* wr = c.w + d * taps(c);
    const T bias = c.bias ? c.bias[d] : T(0);
    for (int64_t t0 = 0; t0 < c.len; t0 += W) {
      V y = pre_act(c, wr, bias, window(c, xr, t0, s.edge.data()));
      if (c.silu) y = y * Tr::sigmoid(y);
      storen<Tr>(out + t0, y, c.len - t0);
    }
  }

  // dx row (contiguous), dw row [K], dbias of the row.
  static void backward_row(const Conv<T>& c, const T* go, int64_t r, T* dx, T* dw, T* db,
                           ConvScratch<T>& s) {
    const int64_t d = r % c.dim, K = taps(c);
    const T* xr = c.xrow(r);
    const T* wr = c.w + d * K;
    const T bias = c.bias ? c.bias[d] : T(0);
    T* g = s.g.data();  // g[t], zero for t >= L (lanes past L get dout = 0)
    V gsum{};
    for (int64_t t0 = 0; t0 < c.len; t0 += W) {
      V gv = loadn<Tr>(go + t0, c.len - t0);
      if (c.silu) {
        const V pre = pre_act(c, wr, bias, window(c, xr, t0, s.edge.data()));
        const V sg = Tr::sigmoid(pre);
        gv = gv * sg * Tr::fma(pre, Tr::set1(T(1)) - sg, Tr::set1(T(1)));
      }
      Tr::store(g + t0, gv);
      gsum += gv;
    }
    constexpr int kCap = KW > 0 ? KW : 1;
    V acc_fixed[kCap];
    std::vector<V> acc_dyn(KW > 0 ? 0 : K);
    V* acc = KW > 0 ? acc_fixed : acc_dyn.data();
    for (int64_t k = 0; k < K; ++k) acc[k] = V{};
    for (int64_t t0 = 0; t0 < c.len; t0 += W) {
      const V gv = Tr::load(g + t0);
      const T* p = window(c, xr, t0, s.edge.data());
      V dxv{};
      for (int64_t k = 0; k < K; ++k) {
        dxv = Tr::fma(Tr::set1(wr[k]), Tr::load(g + t0 + K - 1 - k), dxv);
        acc[k] = Tr::fma(gv, Tr::load(p + k), acc[k]);
      }
      storen<Tr>(dx + t0, dxv, c.len - t0);
    }
    for (int64_t k = 0; k < K; ++k) dw[k] = hsum<Tr>(acc[k]);
    *db = hsum<Tr>(gsum);
  }
};

// Runs f(ConvKernel<Tr, K>{}) with the widths 1..4 compiled in and any other at runtime.
template <class Tr, class F>
void with_width(int64_t width, F&& f) {
  switch (width) {
    case 1: return f(ConvKernel<Tr, 1>{});
    case 2: return f(ConvKernel<Tr, 2>{});
    case 3: return f(ConvKernel<Tr, 3>{});
    case 4: return f(ConvKernel<Tr, 4>{});
    default: return f(ConvKernel<Tr, 0>{});
  }
}

void check_rows(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.dim() == 3 && t.sizes() == x.sizes(), "causal_conv1d: ", name,
              " must be [B, D, L] like x, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "causal_conv1d: ", name,
              " must have x's dtype");
  TORCH_CHECK(t.stride(2) == 1 || t.size(2) <= 1, "causal_conv1d: ", name,
              " must have stride 1 along L");
  TORCH_CHECK(t.device().is_cpu(), "causal_conv1d: ", name, " must be a CPU tensor");
}

// The checked inputs of one call: weight and bias made contiguous (they are small).
struct ConvInputs {
  at::Tensor x, weight;
  std::optional<at::Tensor> bias;
  bool silu;

  ConvInputs(const at::Tensor& x_, const at::Tensor& w_, const std::optional<at::Tensor>& b_,
             bool silu_)
      : x(x_), weight(w_.contiguous()), silu(silu_) {
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                "causal_conv1d: float32 or float64 only (upcast other dtypes), got ",
                x.scalar_type());
    check_rows(x, "x", x);
    TORCH_CHECK(weight.dim() == 2 && weight.size(0) == x.size(1) && weight.size(1) >= 1,
                "causal_conv1d: weight must be [D, W] with D = x.size(1) = ", x.size(1),
                " and W >= 1, got ", weight.sizes());
    TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.device().is_cpu(),
                "causal_conv1d: weight must be a CPU tensor of x's dtype");
    if (b_) {
      TORCH_CHECK(b_->dim() == 1 && b_->size(0) == x.size(1),
                  "causal_conv1d: bias must be [D], got ", b_->sizes());
      TORCH_CHECK(b_->scalar_type() == x.scalar_type() && b_->device().is_cpu(),
                  "causal_conv1d: bias must be a CPU tensor of x's dtype");
      bias = b_->contiguous();
    }
  }

  template <typename T>
  Conv<T> view() const {
    Conv<T> c{x.size(0), x.size(1), x.size(2), weight.size(1)};
    c.x = x.data_ptr<T>();
    c.w = weight.data_ptr<T>();
    c.bias = bias ? bias->data_ptr<T>() : nullptr;
    c.x_sb = x.stride(0);
    c.x_sd = x.stride(1);
    c.silu = silu;
    return c;
  }
};

template <class Tr>
at::Tensor fwd_impl(const ConvInputs& in) {
  using T = typename Tr::T;
  const Conv<T> c = in.view<T>();
  at::Tensor out = at::empty({c.batch, c.dim, c.len}, in.x.options());
  T* o = out.data_ptr<T>();
  with_width<Tr>(c.width, [&](auto k) {
    using K = decltype(k);
    parallel_ranges(
        c.batch * c.dim, [&] { return ConvScratch<T>(c.len, c.width, Tr::W); },
        [&](int64_t, int64_t r0, int64_t r1, ConvScratch<T>& s) {
          for (int64_t r = r0; r < r1; ++r) K::forward_row(c, r, o + r * c.len, s);
        });
  });
  return out;
}

// rows [B * D, n] -> [D, n] summed over B, serially (small; see the scan's note on regions).
template <typename T>
at::Tensor sum_rows_over_batch(const at::Tensor& rows, int64_t batch, int64_t dim) {
  const int64_t n = rows.size(1);
  at::Tensor out = at::empty({dim, n}, rows.options());
  const T* src = rows.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  std::fill_n(dst, dim * n, T(0));
  for (int64_t r = 0; r < batch * dim; ++r) {
    for (int64_t k = 0; k < n; ++k) dst[(r % dim) * n + k] += src[r * n + k];
  }
  return out;
}

template <class Tr>
std::vector<at::Tensor> bwd_impl(const ConvInputs& in, const at::Tensor& dout) {
  using T = typename Tr::T;
  const Conv<T> c = in.view<T>();
  check_rows(dout, "dout", in.x);
  const int64_t rows = c.batch * c.dim;
  const auto opt = in.x.options();
  at::Tensor dx = at::empty({c.batch, c.dim, c.len}, opt);
  at::Tensor dw_rows = at::empty({rows, c.width}, opt), db_rows = at::empty({rows, 1}, opt);
  const T* go = dout.data_ptr<T>();
  const int64_t go_sb = dout.stride(0), go_sd = dout.stride(1);
  T *dxp = dx.data_ptr<T>(), *dwp = dw_rows.data_ptr<T>(), *dbp = db_rows.data_ptr<T>();
  with_width<Tr>(c.width, [&](auto k) {
    using K = decltype(k);
    parallel_ranges(
        rows, [&] { return ConvScratch<T>(c.len, c.width, Tr::W); },
        [&](int64_t, int64_t r0, int64_t r1, ConvScratch<T>& s) {
          for (int64_t r = r0; r < r1; ++r) {
            const T* gor = go + (r / c.dim) * go_sb + (r % c.dim) * go_sd;
            K::backward_row(c, gor, r, dxp + r * c.len, dwp + r * c.width, dbp + r, s);
          }
        });
  });
  at::Tensor dweight = sum_rows_over_batch<T>(dw_rows, c.batch, c.dim);  // [D, K]
  at::Tensor dbias = in.bias ? sum_rows_over_batch<T>(db_rows, c.batch, c.dim).view({c.dim})
                             : at::Tensor();
  return {dx, dweight, dbias};
}

// Entry points. x, dout: [B, D, L] with stride 1 along L (other strides free); weight [D, W];
// bias [D] or None; all float32 or all float64. Output / dx: contiguous [B, D, L].
at::Tensor causal_conv1d_fwd(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, bool silu) {
  const ConvInputs in(x, weight, bias, silu);
  return x.scalar_type() == at::kDouble ? fwd_impl<F64>(in) : fwd_impl<F32>(in);
}

std::vector<at::Tensor> causal_conv1d_bwd(const at::Tensor& x, const at::Tensor& weight,
                                          const std::optional<at::Tensor>& bias,
                                          const at::Tensor& dout, bool silu) {
  const ConvInputs in(x, weight, bias, silu);
  return x.scalar_type() == at::kDouble ? bwd_impl<F64>(in, dout) : bwd_impl<F32>(in, dout);
}

const libs_ext::ExtRegistrar kRegisterConv([](pybind11::module& m) {
  namespace py = pybind11;
  m.def("causal_conv1d_fwd", &causal_conv1d_fwd,
        "Causal depthwise conv1d forward (optional fused SiLU) -> out [B, D, L]", py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("silu"));
  m.def("causal_conv1d_bwd", &causal_conv1d_bwd,
        "Causal depthwise conv1d backward -> [dx [B, D, L], dweight [D, W], dbias [D] or None]",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("dout"), py::arg("silu"));
});

}  // namespace

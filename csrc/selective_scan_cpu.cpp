// Selective scan (Mamba's S6 recurrence) on the CPU: forward and hand-written backward.
//
// Per row (b, d), time t = 0..L-1 and state n = 0..N-1 (reference-spec §5.5):
//   dt_t = softplus(delta_t + bias_d)            (delta_t + bias_d without softplus)
//   h_t  = exp(dt_t A_dn) h_{t-1} + dt_t u_t B_t[n],   h_{-1} = 0
//   y_t  = sum_n C_t[n] h_t[n] + D_d u_t,            out_t = y_t silu(z_t)
//
// Design (measured in docs/cpu-scan-notes.md):
// - rows are split into ~4 ranges per thread, handed out dynamically on ATen's threads (a thread
//   descheduled by other load does not hold up the rest); a row walks L sequentially;
// - the N states of a row live in NV SIMD vectors of W lanes (N = 16 is one AVX-512 vector),
//   padded with A = B = C = 0 lanes; exp is a vectorised exp2 polynomial, not libm;
// - B and C are first transposed to [B*G, L, NP], so one time step is one vector load;
// - the per-step dot products over n are deferred: W product vectors are reduced at once by a
//   transpose-and-add tree, cheaper than one horizontal sum per step;
// - the forward saves the state every kChunk steps; the backward recomputes one chunk into an
//   L1-sized buffer and walks it in reverse carrying dL/dh, for kBlock rows in turn per chunk
//   (the chunk's B, C, dB, dC stay in L1); dB / dC of groups shared with another row range go
//   to per-range slots that are summed afterwards in a fixed order (deterministic results).
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "ext_registry.h"
#include "scan_simd.h"  // F32 / F64 vector traits, loadn / storen, parallel_ranges

namespace {

using namespace libs_simd;

constexpr int64_t kChunk = 64;      // checkpoint interval of the backward, in steps
constexpr int64_t kMaxState = 256;  // largest N, as in mamba-ssm

// Raw views of one call. Rows r = b * dim + d of u / delta / z / dout have stride 1 along L.
template <typename T>
struct Scan {
  int64_t batch, dim, len, dstate, groups, np, nchunks;
  const T *u, *delta, *z, *A, *Dsk, *bias;  // z, Dsk (the D skip), bias may be null
  int64_t u_sb, u_sd, dl_sb, dl_sd, z_sb, z_sd;
  const T *Bt, *Ct;  // [batch * groups, len, np], zero padded
  bool softplus;
  int64_t group_of(int64_t r) const { return (r / dim) * groups + (r % dim) / (dim / groups); }
  const T* urow(int64_t r) const { return u + (r / dim) * u_sb + (r % dim) * u_sd; }
  const T* dlrow(int64_t r) const { return delta + (r / dim) * dl_sb + (r % dim) * dl_sd; }
  const T* zrow(int64_t r) const { return z + (r / dim) * z_sb + (r % dim) * z_sd; }
};

template <typename T>
struct Grads {
  const T *dout, *dlast, *ckpt;  // dout rows stride 1 along L; dlast [rows, N] or null
  int64_t go_sb, go_sd;
  T *du, *ddelta, *dz;           // [B, D, L] contiguous; dz null without z
  T *dA_rows, *dD_rows, *dbias_rows;  // [rows, np], [rows], [rows] (the last two may be null)
};

constexpr int kBlock = 8;  // rows whose backward chunks are interleaved (see backward_block)

// Scratch rows of one row, padded to whole chunks: dt, d dt / d delta, dt u, u, dL/dy (gy),
// dL/dout silu'(z) (gd), y (forward only).
template <typename T>
struct RowBuf {
  std::vector<T> dt, dsp, du, u, gy, gd, y;
  explicit RowBuf(int64_t len)
      : dt(pad(len)), dsp(pad(len)), du(pad(len)), u(pad(len)), gy(pad(len)), gd(pad(len)),
        y(pad(len)) {}
  static int64_t pad(int64_t len) { return (len + kChunk - 1) / kChunk * kChunk; }
};

// Per-thread scratch: row buffers and the chunk buffers of the backward (L1-sized).
template <class Tr>
struct Scratch {
  using T = typename Tr::T;
  using V = typename Tr::V;
  std::vector<RowBuf<T>> rows;
  std::vector<T> h, a;     // states h_{t-1}, h_t and decays a_t of the chunk: [kChunk(+1), np]
  std::vector<V> p, r1, r2;  // per-step products for the deferred sums over n
  Scratch(int64_t len, int64_t np, int nrows)
      : rows(nrows, RowBuf<T>(len)), h((kChunk + 1) * np), a(kChunk * np), p(kChunk),
        r1(kChunk), r2(kChunk) {}
};

// dB / dC partial sums of the (at most two) groups a row range shares with other ranges.
template <typename T>
struct RangeSlots {
  int64_t group[2] = {-1, -1};
  std::vector<T> dB[2], dC[2];  // [L, NP] each, allocated when used
};

template <class Tr, int NV>
struct Kernel {
  using T = typename Tr::T;
  using V = typename Tr::V;
  static constexpr int W = Tr::W;
  static constexpr int kCap = NV > 0 ? NV : int(kMaxState / W);  // NV = 0: runtime count

  static int nvec(const Scan<T>& s) { return NV > 0 ? NV : int(s.np / W); }

  static void load_a(const Scan<T>& s, int64_t d, T scale, V* out) {  // A[d] padded with 0
    T tmp[kCap * W] = {};
    for (int64_t n = 0; n < s.dstate; ++n) tmp[n] = s.A[d * s.dstate + n] * scale;
    for (int v = 0; v < nvec(s); ++v) out[v] = Tr::load(tmp + v * W);
  }

  // dt = softplus(delta + bias) (or without softplus), dsp = d dt / d delta, du = dt u, u.
  static void prepare_dt(const Scan<T>& s, int64_t r, RowBuf<T>& rb) {
    const T bias = s.bias ? s.bias[(r % s.dim)] : T(0);
    const T *dl = s.dlrow(r), *u = s.urow(r);
    for (int64_t i = 0; i < s.len; i += W) {
      V x = loadn<Tr>(dl + i, s.len - i) + bias, g = Tr::set1(1);
      if (s.softplus) Tr::softplus(V(x), x, g);
      const V uv = loadn<Tr>(u + i, s.len - i);
      Tr::store(&rb.dt[i], x);
      Tr::store(&rb.dsp[i], g);
      Tr::store(&rb.du[i], x * uv);
      Tr::store(&rb.u[i], uv);
    }
  }

  // One step of every state vector; returns the products C_t * h_t summed over vectors.
  static V step(const V* a2, V* h, T dt, T du, const T* Bp, const T* Cp, int nv, T* a_out,
                T* h_out) {
    const V dtv = Tr::set1(dt), duv = Tr::set1(du);
    V p{};
    for (int v = 0; v < nv; ++v) {
      const V a = Tr::expa(dtv * a2[v]);
      h[v] = Tr::fma(a, h[v], duv * Tr::load(Bp + v * W));
      p = Tr::fma(Tr::load(Cp + v * W), h[v], p);
      if (a_out) Tr::store(a_out + v * W, a);
      if (h_out) Tr::store(h_out + v * W, h[v]);
    }
    return p;
  }

  static void forward_row(const Scan<T>& s, int64_t r, T* out, T* last, T* ckpt, RowBuf<T>& rb) {
    const int nv = nvec(s);
    prepare_dt(s, r, rb);
    V a2[kCap], h[kCap], prod[W];
    load_a(s, r % s.dim, Tr::kAScale, a2);
    std::fill(h, h + nv, V{});
    std::fill(prod, prod + W, V{});
    const T* Bt = s.Bt + s.group_of(r) * s.len * s.np;
    const T* Ct = s.Ct + s.group_of(r) * s.len * s.np;
    for (int64_t t0 = 0; t0 < s.len; t0 += W) {
      if (ckpt && t0 % kChunk == 0) {
        for (int v = 0; v < nv; ++v) Tr::store(ckpt + (t0 / kChunk) * s.np + v * W, h[v]);
      }
      for (int64_t t = t0; t < std::min<int64_t>(t0 + W, s.len); ++t) {
        prod[t - t0] = step(a2, h, rb.dt[t], rb.du[t], Bt + t * s.np, Ct + t * s.np, nv,
                            nullptr, nullptr);
      }
      Tr::store(&rb.y[t0], Tr::tsum(prod));
    }
    T tmp[kCap * W];
    for (int v = 0; v < nv; ++v) Tr::store(tmp + v * W, h[v]);
    std::copy(tmp, tmp + s.dstate, last);
    finish_out(s, r, rb, out);
  }

  // out = (y + D u) silu(z).
  static void finish_out(const Scan<T>& s, int64_t r, const RowBuf<T>& rb, T* out) {
    for (int64_t i = 0; i < s.len; i += W) {
      V yv = Tr::load(&rb.y[i]);
      if (s.Dsk) yv = Tr::fma(Tr::set1(s.Dsk[r % s.dim]), Tr::load(&rb.u[i]), yv);
      if (s.z) {
        const V zv = loadn<Tr>(s.zrow(r) + i, s.len - i);
        yv = yv * zv * Tr::sigmoid(zv);
      }
      storen<Tr>(out + i, yv, s.len - i);
    }
  }

  static void forward_range(const Scan<T>& s, int64_t r0, int64_t r1, T* out, T* last, T* ckpt,
                            Scratch<Tr>& w) {
    for (int64_t r = r0; r < r1; ++r) {
      forward_row(s, r, out + r * s.len, last + r * s.dstate,
                  ckpt ? ckpt + r * s.nchunks * s.np : nullptr, w.rows[0]);
    }
  }

  // Backward state of one row, carried across its chunks (walked from the last to the first).
  struct RowState {
    V a2[kCap], ar[kCap], lam[kCap], anext[kCap], dA[kCap];
    V acc_d{}, acc_bias{};
  };

  // Row pass in time order (the chunks run backwards, which defeats the prefetcher):
  // gy = dL/dy = g silu(z) and gd = g silu'(z) for dz; the carried state starts at
  // lam = dL/dh_{L-1} (the last state's gradient, or 0) and a_L = 1.
  static void prepare_grad(const Scan<T>& s, const Grads<T>& g, int64_t r, RowState& st,
                           RowBuf<T>& rb) {
    prepare_dt(s, r, rb);
    const T* go = g.dout + (r / s.dim) * g.go_sb + (r % s.dim) * g.go_sd;
    for (int64_t i = 0; i < s.len; i += W) {
      const V gv = loadn<Tr>(go + i, s.len - i);
      if (!s.z) {
        Tr::store(&rb.gy[i], gv);
        continue;
      }
      const V zv = loadn<Tr>(s.zrow(r) + i, s.len - i), sg = Tr::sigmoid(zv);
      Tr::store(&rb.gy[i], gv * zv * sg);
      Tr::store(&rb.gd[i], gv * sg * (zv * (Tr::set1(1) - sg) + T(1)));
    }
    load_a(s, r % s.dim, Tr::kAScale, st.a2);
    load_a(s, r % s.dim, T(1), st.ar);
    T tmp[kCap * W] = {};
    if (g.dlast) std::copy(g.dlast + r * s.dstate, g.dlast + (r + 1) * s.dstate, tmp);
    for (int v = 0; v < nvec(s); ++v) {
      st.lam[v] = Tr::load(tmp + v * W);
      st.anext[v] = Tr::set1(1);
      st.dA[v] = V{};
    }
    st.acc_d = st.acc_bias = V{};
  }

  static void recompute_chunk(const Scan<T>& s, const T* ck, const T* Bt, const T* Ct,
                              int64_t t0, int64_t n, const RowState& st, const RowBuf<T>& rb,
                              Scratch<Tr>& w) {
    V h[kCap];
    for (int v = 0; v < nvec(s); ++v) h[v] = Tr::load(ck + v * W);
    std::copy(ck, ck + s.np, w.h.begin());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = t0 + i;
      w.p[i] = step(st.a2, h, rb.dt[t], rb.du[t], Bt + t * s.np, Ct + t * s.np, nvec(s),
                    &w.a[i * s.np], &w.h[(i + 1) * s.np]);
    }
  }

  // dz = g silu'(z) y, with y = sum_n C h + D u from the recomputed chunk.
  static void gate_chunk(const Scan<T>& s, const Grads<T>& g, int64_t r, int64_t t0, int64_t n,
                         const RowBuf<T>& rb, Scratch<Tr>& w) {
    for (int64_t i = 0; i < n; i += W) {
      V y = Tr::tsum(&w.p[i]);
      if (s.Dsk) y = Tr::fma(Tr::set1(s.Dsk[r % s.dim]), Tr::load(&rb.u[t0 + i]), y);
      storen<Tr>(g.dz + r * s.len + t0 + i, Tr::load(&rb.gd[t0 + i]) * y, n - i);
    }
  }

  // Reverse walk: lam = dL/dh_t; dB, dC into dst rows; per-step sums over n into r1, r2.
  // The carried vectors are copied to locals: stores through dB / dC (float*) could alias
  // st's members and would force them through memory on the critical path.
  static void reverse_chunk(const Scan<T>& s, const T* Bt, const T* Ct, T* dB, T* dC,
                            int64_t t0, int64_t n, RowState& st, const RowBuf<T>& rb,
                            Scratch<Tr>& w) {
    const int nv = nvec(s);
    V lam[kCap], anext[kCap], dA[kCap], ar[kCap];
    std::copy(st.lam, st.lam + nv, lam);
    std::copy(st.anext, st.anext + nv, anext);
    std::copy(st.dA, st.dA + nv, dA);
    std::copy(st.ar, st.ar + nv, ar);
    for (int64_t i = n - 1; i >= 0; --i) {
      const int64_t t = t0 + i, o = t * s.np;
      const V gyv = Tr::set1(rb.gy[t]), dtv = Tr::set1(rb.dt[t]), duv = Tr::set1(rb.du[t]);
      const T *hcur = &w.h[(i + 1) * s.np], *hprev = &w.h[i * s.np], *ap = &w.a[i * s.np];
      V s1{}, s2{};
      for (int v = 0; v < nv; ++v) {
        const int64_t k = o + v * W;
        lam[v] = Tr::fma(anext[v], lam[v], gyv * Tr::load(Ct + k));
        Tr::store(dC + k, Tr::fma(gyv, Tr::load(hcur + v * W), Tr::load(dC + k)));
        Tr::store(dB + k, Tr::fma(duv, lam[v], Tr::load(dB + k)));
        anext[v] = Tr::load(ap + v * W);
        const V q = lam[v] * Tr::load(hprev + v * W) * anext[v];  // dL/da_t * a_t
        dA[v] = Tr::fma(q, dtv, dA[v]);
        s1 = Tr::fma(q, ar[v], s1);
        s2 = Tr::fma(lam[v], Tr::load(Bt + k), s2);
      }
      w.r1[i] = s1;
      w.r2[i] = s2;
    }
    std::copy(lam, lam + nv, st.lam);
    std::copy(anext, anext + nv, st.anext);
    std::copy(dA, dA + nv, st.dA);
  }

  // du, ddelta of the chunk from r1 = sum_n q A and r2 = sum_n lam B.
  static void finish_chunk(const Scan<T>& s, const Grads<T>& g, int64_t r, int64_t t0,
                           int64_t n, RowState& st, const RowBuf<T>& rb, Scratch<Tr>& w) {
    for (int64_t i = 0; i < n; i += W) {
      const V s1 = Tr::tsum(&w.r1[i]), s2 = Tr::tsum(&w.r2[i]);
      const V uv = Tr::load(&rb.u[t0 + i]), gy = Tr::load(&rb.gy[t0 + i]);
      V du = Tr::load(&rb.dt[t0 + i]) * s2;
      if (s.Dsk) du = Tr::fma(Tr::set1(s.Dsk[r % s.dim]), gy, du);
      const V dd = Tr::fma(uv, s2, s1) * Tr::load(&rb.dsp[t0 + i]);
      storen<Tr>(g.du + r * s.len + t0 + i, du, n - i);
      storen<Tr>(g.ddelta + r * s.len + t0 + i, dd, n - i);
      st.acc_bias += maskn<Tr>(dd, n - i);  // only the valid lanes enter the row sums
      st.acc_d += gy * uv;                    // gy and u are zero past the end
    }
  }

  // Rows r0 .. r0+nr-1 (nr <= kBlock), chunk by chunk: the rows' recomputes and reverse
  // walks of one chunk run back to back, so the chunk's B, C, dB, dC stay in L1 across rows
  // (one row at a time would stream the whole [L, NP] of all four through L2 for every row).
  static void backward_block(const Scan<T>& s, const Grads<T>& g, int64_t r0, int nr,
                             T* const* dB, T* const* dC, Scratch<Tr>& w) {
    RowState st[kBlock];
    for (int j = 0; j < nr; ++j) prepare_grad(s, g, r0 + j, st[j], w.rows[j]);
    for (int64_t c = s.nchunks - 1; c >= 0; --c) {
      const int64_t t0 = c * kChunk, n = std::min(kChunk, s.len - t0);
      for (int j = 0; j < nr; ++j) {
        const int64_t r = r0 + j, bc = s.group_of(r) * s.len * s.np;
        const T* ck = g.ckpt + (r * s.nchunks + c) * s.np;
        recompute_chunk(s, ck, s.Bt + bc, s.Ct + bc, t0, n, st[j], w.rows[j], w);
        if (s.z) gate_chunk(s, g, r, t0, n, w.rows[j], w);
        reverse_chunk(s, s.Bt + bc, s.Ct + bc, dB[j], dC[j], t0, n, st[j], w.rows[j], w);
        finish_chunk(s, g, r, t0, n, st[j], w.rows[j], w);
      }
    }
    for (int j = 0; j < nr; ++j) {
      const int64_t r = r0 + j;
      for (int v = 0; v < nvec(s); ++v) Tr::store(g.dA_rows + r * s.np + v * W, st[j].dA[v]);
      if (g.dD_rows) g.dD_rows[r] = hsum<Tr>(st[j].acc_d);
      if (g.dbias_rows) g.dbias_rows[r] = hsum<Tr>(st[j].acc_bias);
    }
  }

  // Rows [r0, r1). dB / dC of a group wholly inside the range go straight to dBt / dCt;
  // the (at most two) groups shared with other ranges go to the range's own slots 0 and 1.
  static void backward_range(const Scan<T>& s, const Grads<T>& g, int64_t r0, int64_t r1,
                             T* dBt, T* dCt, RangeSlots<T>& slots, Scratch<Tr>& w) {
    const int64_t dg = s.dim / s.groups, stride = s.len * s.np;
    T *dB[kBlock], *dC[kBlock];
    for (int64_t rb = r0; rb < r1; rb += kBlock) {
      const int nr = int(std::min<int64_t>(kBlock, r1 - rb));
      for (int j = 0; j < nr; ++j) {
        const int64_t gi = s.group_of(rb + j);
        dB[j] = dBt + gi * stride;
        dC[j] = dCt + gi * stride;
        if (gi * dg >= r0 && (gi + 1) * dg <= r1) continue;  // group owned by this range
        const int k = gi == s.group_of(r0) ? 0 : 1;
        if (slots.group[k] < 0) {
          slots.group[k] = gi;
          slots.dB[k].assign(stride, T(0));
          slots.dC[k].assign(stride, T(0));
        }
        dB[j] = slots.dB[k].data();
        dC[j] = slots.dC[k].data();
      }
      backward_block(s, g, rb, nr, dB, dC, w);
    }
  }
};

// Runs f(Kernel<Tr, NV>{}) with NV = 1, 2 compiled in and larger counts at runtime.
template <class Tr, class F>
void with_kernel(int64_t np, F&& f) {
  const int64_t nv = np / Tr::W;
  if (nv == 1) return f(Kernel<Tr, 1>{});
  if (nv == 2) return f(Kernel<Tr, 2>{});
  f(Kernel<Tr, 0>{});
}

void check_row_tensor(const at::Tensor& x, const char* name, const at::Tensor& u) {
  TORCH_CHECK(x.dim() == 3 && x.sizes() == u.sizes(), name, " must be [B, D, L] like u, got ",
              x.sizes());
  TORCH_CHECK(x.scalar_type() == u.scalar_type(), name, " must have u's dtype");
  TORCH_CHECK(x.stride(2) == 1 || x.size(2) == 1, name, " must have stride 1 along L");
  TORCH_CHECK(x.device().is_cpu(), name, " must be a CPU tensor");
}

std::optional<at::Tensor> vector_arg(const std::optional<at::Tensor>& x, const at::Tensor& u,
                                     const char* name) {
  if (!x) return x;
  TORCH_CHECK(x->dim() == 1 && x->size(0) == u.size(1), name, " must be [D]");
  return x->to(u.scalar_type()).contiguous();
}

// Serial helpers for the small tensors around the kernel. They stay out of ATen's thread pool
// on purpose: on oversubscribed cores each parallel region's barrier costs scheduler ticks (a
// 26 us zeros + copy took 12 ms on 2 busy threads), so each kernel call opens one region only.

// x [B, G, N, L] (any strides) -> [B, G, L, np], lanes N..np-1 zero.
template <typename T>
at::Tensor to_step_major(const at::Tensor& x, int64_t np) {
  const int64_t nb = x.size(0), ng = x.size(1), n = x.size(2), len = x.size(3);
  const int64_t sb = x.stride(0), sg = x.stride(1), sn = x.stride(2), sl = x.stride(3);
  at::Tensor out = at::empty({nb, ng, len, np}, x.options());
  const T* base = x.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t g = 0; g < ng; ++g) {
      const T* src = base + b * sb + g * sg;
      for (int64_t t = 0; t < len; ++t, dst += np) {
        for (int64_t k = 0; k < n; ++k) dst[k] = src[k * sn + t * sl];
        std::fill(dst + n, dst + np, T(0));
      }
    }
  }
  return out;
}

// xt [B, G, L, np] -> [B, G, N, L].
template <typename T>
at::Tensor from_step_major(const at::Tensor& xt, int64_t n) {
  const int64_t groups = xt.size(0) * xt.size(1), len = xt.size(2), np = xt.size(3);
  at::Tensor out = at::empty({xt.size(0), xt.size(1), n, len}, xt.options());
  const T* src = xt.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  for (int64_t bg = 0; bg < groups; ++bg, dst += n * len) {
    for (int64_t t = 0; t < len; ++t, src += np) {
      for (int64_t k = 0; k < n; ++k) dst[k * len + t] = src[k];
    }
  }
  return out;
}

// rows [B * D, width] -> [D, n]: the first n values of each row, summed over B.
template <typename T>
at::Tensor sum_over_batch(const at::Tensor& rows, int64_t batch, int64_t n) {
  const int64_t dim = rows.size(0) / batch, width = rows.size(1);
  at::Tensor out = at::empty({dim, n}, rows.options());
  const T* src = rows.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  std::fill_n(dst, dim * n, T(0));
  for (int64_t r = 0; r < batch * dim; ++r) {
    for (int64_t k = 0; k < n; ++k) dst[(r % dim) * n + k] += src[r * width + k];
  }
  return out;
}

// The checked inputs of one call, with B and C transposed to [B, G, L, NP] (Bt, Ct).
struct Inputs {
  at::Tensor u, delta, A, B, C;
  std::optional<at::Tensor> D, z, bias;
  bool softplus;
  at::Tensor Bt, Ct;

  Inputs(const at::Tensor& u_, const at::Tensor& delta_, const at::Tensor& A_,
         const at::Tensor& B_, const at::Tensor& C_, const std::optional<at::Tensor>& D_,
         const std::optional<at::Tensor>& z_, const std::optional<at::Tensor>& bias_, bool sp)
      : u(u_), delta(delta_), A(A_.contiguous()), B(B_), C(C_), z(z_), softplus(sp) {
    TORCH_CHECK(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
                "selective_scan: float32 or float64 only (upcast other dtypes)");
    check_row_tensor(u, "u", u);
    check_row_tensor(delta, "delta", u);
    if (z) check_row_tensor(*z, "z", u);
    const int64_t dim = u.size(1), dstate = A.size(1);
    TORCH_CHECK(A.dim() == 2 && A.size(0) == dim, "A must be [D, N]");
    TORCH_CHECK(dstate >= 1 && dstate <= kMaxState, "N must be in [1, ", kMaxState, "]");
    TORCH_CHECK(B.dim() == 4 && B.sizes() == C.sizes() && B.size(0) == u.size(0) &&
                    B.size(2) == dstate && B.size(3) == u.size(2),
                "B and C must be [B, G, N, L]");
    TORCH_CHECK(B.size(1) >= 1 && dim % B.size(1) == 0, "D must be a multiple of the groups G");
    for (const auto& t : {A, B, C}) {
      TORCH_CHECK(t.scalar_type() == u.scalar_type(), "A, B, C must have u's dtype");
    }
    D = vector_arg(D_, u, "D");
    bias = vector_arg(bias_, u, "delta_bias");
    const int64_t width = u.scalar_type() == at::kDouble ? F64::W : F32::W;
    const int64_t np = (dstate + width - 1) / width * width;
    const bool f64 = u.scalar_type() == at::kDouble;
    Bt = f64 ? to_step_major<double>(B, np) : to_step_major<float>(B, np);
    Ct = f64 ? to_step_major<double>(C, np) : to_step_major<float>(C, np);
  }

  template <typename T>
  Scan<T> view() const {
    const int64_t len = u.size(2);
    Scan<T> s{u.size(0), u.size(1), len, A.size(1), B.size(1), Bt.size(3),
              (len + kChunk - 1) / kChunk};
    s.u = u.data_ptr<T>();
    s.delta = delta.data_ptr<T>();
    s.z = z ? z->data_ptr<T>() : nullptr;
    s.A = A.data_ptr<T>();
    s.Dsk = D ? D->data_ptr<T>() : nullptr;
    s.bias = bias ? bias->data_ptr<T>() : nullptr;
    s.u_sb = u.stride(0), s.u_sd = u.stride(1);
    s.dl_sb = delta.stride(0), s.dl_sd = delta.stride(1);
    s.z_sb = z ? z->stride(0) : 0, s.z_sd = z ? z->stride(1) : 0;
    s.Bt = Bt.data_ptr<T>();
    s.Ct = Ct.data_ptr<T>();
    s.softplus = softplus;
    return s;
  }
};

template <class Tr>
std::vector<at::Tensor> fwd_impl(const Inputs& in, bool save_states) {
  using T = typename Tr::T;
  const Scan<T> s = in.view<T>();
  const auto opt = in.u.options();
  at::Tensor out = at::empty({s.batch, s.dim, s.len}, opt);
  at::Tensor last = at::empty({s.batch, s.dim, s.dstate}, opt);
  at::Tensor ckpt = save_states ? at::empty({s.batch, s.dim, s.nchunks, s.np}, opt) : at::Tensor();
  T* ck = save_states ? ckpt.data_ptr<T>() : nullptr;
  with_kernel<Tr>(s.np, [&](auto k) {
    parallel_ranges(
        s.batch * s.dim, [&] { return Scratch<Tr>(s.len, s.np, 1); },
        [&](int64_t, int64_t r0, int64_t r1, Scratch<Tr>& w) {
          decltype(k)::forward_range(s, r0, r1, out.data_ptr<T>(), last.data_ptr<T>(), ck, w);
        });
  });
  return {out, last, ckpt};
}

// Adds each range's shared-group slots into dBt / dCt, in range order (deterministic sums).
template <typename T>
void merge_slots(const std::vector<RangeSlots<T>>& slots, T* dBt, T* dCt, int64_t stride) {
  for (const auto& sl : slots) {
    for (int k = 0; k < 2; ++k) {
      if (sl.group[k] < 0) continue;
      T *dB = dBt + sl.group[k] * stride, *dC = dCt + sl.group[k] * stride;
      for (int64_t i = 0; i < stride; ++i) dB[i] += sl.dB[k][i];
      for (int64_t i = 0; i < stride; ++i) dC[i] += sl.dC[k][i];
    }
  }
}

template <class Tr>
std::vector<at::Tensor> bwd_impl(const Inputs& in, const at::Tensor& ckpt, const at::Tensor& dout,
                                 const std::optional<at::Tensor>& dlast) {
  using T = typename Tr::T;
  const Scan<T> s = in.view<T>();
  check_row_tensor(dout, "dout", in.u);
  const int64_t rows = s.batch * s.dim;
  TORCH_CHECK(ckpt.is_contiguous() && ckpt.numel() == rows * s.nchunks * s.np,
              "ckpt does not match this problem (was it saved by selective_scan_fwd?)");
  const at::Tensor dlast_c = dlast ? dlast->to(in.u.scalar_type()).contiguous() : at::Tensor();
  const auto opt = in.u.options();
  at::Tensor du = at::empty({s.batch, s.dim, s.len}, opt), ddelta = at::empty_like(du);
  at::Tensor dz = in.z ? at::empty_like(du) : at::Tensor();
  at::Tensor dA_rows = at::empty({rows, s.np}, opt), dD_rows = at::empty({rows, 1}, opt);
  at::Tensor dbias_rows = at::empty({rows, 1}, opt);
  at::Tensor dBt = at::empty_like(in.Bt), dCt = at::empty_like(in.Ct);
  std::fill_n(dBt.data_ptr<T>(), dBt.numel(), T(0));
  std::fill_n(dCt.data_ptr<T>(), dCt.numel(), T(0));
  std::vector<RangeSlots<T>> slots(num_ranges(rows));
  const Grads<T> g{dout.data_ptr<T>(), dlast ? dlast_c.data_ptr<T>() : nullptr,
                   ckpt.data_ptr<T>(), dout.stride(0), dout.stride(1), du.data_ptr<T>(),
                   ddelta.data_ptr<T>(), in.z ? dz.data_ptr<T>() : nullptr,
                   dA_rows.data_ptr<T>(), in.D ? dD_rows.data_ptr<T>() : nullptr,
                   in.bias ? dbias_rows.data_ptr<T>() : nullptr};
  with_kernel<Tr>(s.np, [&](auto k) {
    parallel_ranges(
        rows, [&] { return Scratch<Tr>(s.len, s.np, kBlock); },
        [&](int64_t q, int64_t r0, int64_t r1, Scratch<Tr>& w) {
          decltype(k)::backward_range(s, g, r0, r1, dBt.data_ptr<T>(), dCt.data_ptr<T>(),
                                      slots[q], w);
        });
  });
  merge_slots(slots, dBt.data_ptr<T>(), dCt.data_ptr<T>(), s.len * s.np);
  at::Tensor dA = sum_over_batch<T>(dA_rows, s.batch, s.dstate);  // [D, N]
  at::Tensor dD = in.D ? sum_over_batch<T>(dD_rows, s.batch, 1).view({s.dim}) : at::Tensor();
  at::Tensor dbias =
      in.bias ? sum_over_batch<T>(dbias_rows, s.batch, 1).view({s.dim}) : at::Tensor();
  at::Tensor dB = from_step_major<T>(dBt, s.dstate), dC = from_step_major<T>(dCt, s.dstate);
  return {du, ddelta, dA, dB, dC, dD, dz, dbias};
}

// Entry points. u, delta, z, dout: [B, D, L] with stride 1 along L (other strides free);
// A: [D, N]; B, C: [B, G, N, L] any strides; D, delta_bias: [D]; all float32 or all float64.
std::vector<at::Tensor> selective_scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, bool save_states) {
  const Inputs in(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  return u.scalar_type() == at::kDouble ? fwd_impl<F64>(in, save_states)
                                        : fwd_impl<F32>(in, save_states);
}

std::vector<at::Tensor> selective_scan_bwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& ckpt,
    const at::Tensor& dout, const std::optional<at::Tensor>& dlast) {
  const Inputs in(u, delta, A, B, C, D, z, delta_bias, delta_softplus);
  return u.scalar_type() == at::kDouble ? bwd_impl<F64>(in, ckpt, dout, dlast)
                                        : bwd_impl<F32>(in, ckpt, dout, dlast);
}

const libs_ext::ExtRegistrar kRegisterScan([](pybind11::module& m) {
  namespace py = pybind11;
  m.def("selective_scan_fwd", &selective_scan_fwd,
        "Selective scan forward -> [out [B,D,L], last_state [B,D,N], checkpoints or None]",
        py::arg("u"), py::arg("delta"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("delta_bias"), py::arg("delta_softplus"), py::arg("save_states"));
  m.def("selective_scan_bwd", &selective_scan_bwd,
        "Selective scan backward -> [du, ddelta, dA, dB, dC, dD, dz, ddelta_bias] (None if absent)",
        py::arg("u"), py::arg("delta"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("delta_bias"), py::arg("delta_softplus"), py::arg("ckpt"),
        py::arg("dout"), py::arg("dlast"));
});

}  // namespace

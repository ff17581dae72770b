// SIMD and threading helpers shared by the CPU kernels (selective scan, causal conv1d).
//
// - F32: float32 in W-lane GCC vectors (16 lanes with AVX-512, else 8), a polynomial exp2 and
//   exp / sigmoid / softplus built on it, and a transpose-and-add tree (tsum) for W horizontal
//   sums at once. F64: the scalar float64 twin (W = 1, libm), for gradchecks and tiny shapes.
// - loadn / storen / maskn / hsum: partial vectors for the tails of user rows.
// - FlushDenormals, parallel_ranges: one ATen parallel region per call, rows handed out in
//   ~4 ranges per thread (see docs/cpu-scan-notes.md on oversubscribed cores).
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace libs_simd {

#if defined(__AVX512F__)
#define SCAN_WF 16
#else
#define SCAN_WF 8  // AVX2 width; GCC lowers the generic vectors on narrower targets
#endif
typedef float vfloat __attribute__((vector_size(SCAN_WF * 4)));
typedef int32_t vint __attribute__((vector_size(SCAN_WF * 4)));
// Unaligned access type. Typed (not memcpy) loads and stores: a memcpy may alias anything, which
// made GCC reload every scratch pointer after each store in the inner loops.
typedef float vfloat_u __attribute__((vector_size(SCAN_WF * 4), aligned(4)));

// Shuffle masks of the transpose-and-add tree: level l pairs lanes h = 2^l apart.
struct TsumMasks {
  int32_t lo[4][SCAN_WF] = {}, hi[4][SCAN_WF] = {};
  constexpr TsumMasks() {
    for (int lvl = 0, h = 1; h < SCAN_WF; ++lvl, h *= 2) {
      for (int i = 0; i < SCAN_WF; ++i) {
        const int blk = i / (2 * h), pos = i % (2 * h);
        lo[lvl][i] = (pos < h ? 0 : SCAN_WF) + blk * 2 * h + pos % h;
        hi[lvl][i] = lo[lvl][i] + h;
      }
    }
  }
};
constexpr TsumMasks kTsum{};

// float32: W-lane vectors, polynomial exp2 (relative error < 3e-7).
struct F32 {
  using T = float;
  using V = vfloat;
  static constexpr int W = SCAN_WF;
  static constexpr float kAScale = 1.44269504088896341f;  // exp(x) = exp2(x log2 e)

  static V set1(T s) {
#if defined(__AVX512F__)
    return _mm512_set1_ps(s);
#elif defined(__AVX__)
    return _mm256_set1_ps(s);
#else
    return V{} + s;
#endif
  }
  static V load(const T* p) { return *reinterpret_cast<const vfloat_u*>(p); }
  static void store(T* p, V v) { *reinterpret_cast<vfloat_u*>(p) = v; }
  static V sel(vint m, V a, V b) { return m ? a : b; }
  static V fma(V a, V b, V c) {
#if defined(__AVX512F__)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
  }
  static V exp2_frac(V f) {  // 2^f on [-0.5, 0.5], near-minimax degree 5
    V p = fma(set1(1.3276471e-3f), f, set1(9.675542e-3f));
    p = fma(p, f, set1(5.550713e-2f));
    p = fma(p, f, set1(2.402212e-1f));
    p = fma(p, f, set1(6.9314694e-1f));
    return fma(p, f, set1(1.0000001f));
  }
  static V expa(V t) {  // exp of x = t / kAScale, i.e. 2^t
#if defined(__AVX512F__)
    const V k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_scalef_ps(exp2_frac(t - k), k);  // scalef handles under/overflow
#else
    t = sel(t < -127.f, set1(-127.f), sel(t > 127.f, set1(127.f), t));
    const V k = (t + 12582912.f) - 12582912.f;  // round to nearest (1.5 * 2^23 trick)
    const vint e = (__builtin_convertvector(k, vint) + 127) << 23;  // 2^k; k = -127 gives 0
    return exp2_frac(t - k) * (V)e;
#endif
  }
  static V exp_neg_abs(V x) { return expa((V)((vint)x | (int32_t)0x80000000) * kAScale); }
  static V sigmoid(V x) {  // from exp(-|x|): never overflows
    const V e = exp_neg_abs(x), inv = set1(1.f) / (e + 1.f);
    return sel(x >= 0.f, inv, e * inv);
  }
  // softplus with torch's threshold (x > 20 -> x) and its derivative sigmoid(x) (1 above it).
  static void softplus(V x, V& sp, V& dsp) {
    const V e = exp_neg_abs(x);
    const V s = e / (e + 2.f);  // log1p(e) = 2 atanh(s), s in (0, 1/3]: no cancellation
    const V s2 = s * s;
    V p = fma(set1(1.f / 13), s2, set1(1.f / 11));
    for (float c : {1.f / 9, 1.f / 7, 1.f / 5, 1.f / 3, 1.f}) p = fma(p, s2, set1(c));
    const vint big = x > 20.f;
    sp = sel(big, x, sel(x > 0.f, x, V{}) + 2.f * s * p);
    const V inv = set1(1.f) / (e + 1.f);
    dsp = sel(big, set1(1.f), sel(x >= 0.f, inv, e * inv));
  }
  static V tsum(const V* p) {  // lane i of the result = sum of the lanes of p[i]
    V cur[W];
    for (int i = 0; i < W; ++i) cur[i] = p[i];
    for (int lvl = 0, n = W; n > 1; ++lvl, n /= 2) {
      vint lo, hi;
      std::memcpy(&lo, kTsum.lo[lvl], sizeof(vint));
      std::memcpy(&hi, kTsum.hi[lvl], sizeof(vint));
      for (int k = 0; k < n / 2; ++k) {
        cur[k] = __builtin_shuffle(cur[2 * k], cur[2 * k + 1], lo) +
                 __builtin_shuffle(cur[2 * k], cur[2 * k + 1], hi);
      }
    }
    return cur[0];
  }
};

// float64: the simple scalar path (W = 1) with libm, used for gradchecks and tiny shapes.
struct F64 {
  using T = double;
  using V = double;
  static constexpr int W = 1;
  static constexpr double kAScale = 1.0;

  static V set1(T s) { return s; }
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V expa(V x) { return std::exp(x); }
  static V sigmoid(V x) { return 1.0 / (1.0 + std::exp(-x)); }
  static void softplus(V x, V& sp, V& dsp) {
    sp = x > 20.0 ? x : std::log1p(std::exp(x));
    dsp = x > 20.0 ? 1.0 : sigmoid(x);
  }
  static V tsum(const V* p) { return p[0]; }
};

// Partial-vector helpers for the tails of user rows (scratch rows are padded instead).
template <class Tr>
typename Tr::V loadn(const typename Tr::T* p, int64_t n) {
  if (n >= Tr::W) return Tr::load(p);
  typename Tr::T tmp[Tr::W] = {};
  std::memcpy(tmp, p, n * sizeof(tmp[0]));
  return Tr::load(tmp);
}
template <class Tr>
void storen(typename Tr::T* p, typename Tr::V v, int64_t n) {
  if (n >= Tr::W) return Tr::store(p, v);
  typename Tr::T tmp[Tr::W];
  Tr::store(tmp, v);
  std::memcpy(p, tmp, n * sizeof(tmp[0]));
}
template <class Tr>
typename Tr::V maskn(typename Tr::V v, int64_t n) {  // lanes >= n set to 0
  if (n >= Tr::W) return v;
  typename Tr::T tmp[Tr::W];
  Tr::store(tmp, v);
  std::fill(tmp + n, tmp + Tr::W, typename Tr::T(0));
  return Tr::load(tmp);
}
template <class Tr>
typename Tr::T hsum(typename Tr::V v) {  // sum of the lanes (once per row: no need for speed)
  typename Tr::T tmp[Tr::W], s = 0;
  Tr::store(tmp, v);
  for (int i = 0; i < Tr::W; ++i) s += tmp[i];
  return s;
}
// Sets flush-to-zero / denormals-are-zero for the scope: states decaying over a long zero
// (padded) input reach subnormals, whose arithmetic is many times slower.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

inline int64_t num_ranges(int64_t rows) {
  return std::min<int64_t>(rows, 4 * at::get_num_threads());
}

// Splits `rows` into ~4 contiguous ranges per thread and runs f(q, r0, r1, scratch) for each
// range q = [r0, r1) on ATen's threads (honours torch.set_num_threads), handing ranges out one
// at a time so that a thread descheduled by other load does not hold up the rest. Each thread
// makes its scratch once.
template <class MakeScratch, class F>
void parallel_ranges(int64_t rows, const MakeScratch& make, const F& f) {
  const int64_t n = num_ranges(rows);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    FlushDenormals ftz;
    auto w = make();
    for (int64_t q = next++; q < n; q = next++) f(q, q * rows / n, (q + 1) * rows / n, w);
  });
}
}  // namespace libs_simd

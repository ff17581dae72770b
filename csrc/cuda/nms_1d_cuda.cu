// CUDA twins of the 1-D hard NMS and soft-NMS in nms_1d_cpu.cpp (same semantics, see nms_1d.h).
//
// Numerics: setup.py compiles with --use_fast_math, which would make '/' approximate. Every
// IoU and score update below uses the explicit round-to-nearest intrinsics (__fadd_rn, ...)
// and the Gaussian weight is evaluated in double, so the results match the CPU kernel bit for
// bit except for the last ulp of exp(). Ties: the CPU kernel orders equal scores as at::sort
// does on the CPU (introsort, unspecified); here a stable sort keeps them in index order. So
// CPU and CUDA agree exactly when no two scores are equal (the torchvision parity rule).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <math_constants.h>

#include <cstdint>
#include <cub/cub.cuh>
#include <vector>

#include "nms_1d.h"

namespace libs_ext {
namespace {

constexpr int kMaskBits = 64;       // hard NMS: one uint64 of suppression bits per 64 columns
constexpr int kSoftThreads = 512;   // soft-NMS: one block walks the whole (sequential) list

__device__ __forceinline__ float iou_rn(float ix1, float ix2, float iarea, float jx1, float jx2,
                                        float jarea) {
  const float inter = fmaxf(0.f, __fsub_rn(fminf(ix2, jx2), fmaxf(ix1, jx1)));
  return __fdiv_rn(inter, __fsub_rn(__fadd_rn(iarea, jarea), inter));
}

__device__ __forceinline__ float soft_weight_rn(float ovr, float thr, float sigma, int method) {
  if (method == 0) return ovr >= thr ? 0.f : 1.f;
  if (method == 1) return ovr >= thr ? __fsub_rn(1.f, ovr) : 1.f;
  if (ovr == 0.f) return 1.f;  // exp(-0) == 1 exactly; most pairs do not overlap
  const float x = __fdiv_rn(-__fmul_rn(ovr, ovr), sigma);
  return static_cast<float>(exp(static_cast<double>(x)));  // double: immune to fast-math expf
}

// Hard NMS, step 1. Segments are already sorted by descending score. Block (col_block,
// row_block) sets bit k of mask[i][col_block] when row i suppresses column col_block*64+k > i.
__global__ void nms_mask_kernel(int64_t n, int64_t n_blocks, float thr,
                                const float* __restrict__ x1, const float* __restrict__ x2,
                                const float* __restrict__ areas,
                                unsigned long long* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;  // lower-scored rows never suppress higher-scored columns
  const int64_t rows_left = n - row_block * kMaskBits, cols_left = n - col_block * kMaskBits;
  const int row_size = static_cast<int>(rows_left < kMaskBits ? rows_left : kMaskBits);
  const int col_size = static_cast<int>(cols_left < kMaskBits ? cols_left : kMaskBits);
  __shared__ float cx1[kMaskBits], cx2[kMaskBits], carea[kMaskBits];
  if (threadIdx.x < col_size) {
    const int64_t j = col_block * kMaskBits + threadIdx.x;
    cx1[threadIdx.x] = x1[j], cx2[threadIdx.x] = x2[j], carea[threadIdx.x] = areas[j];
  }
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int64_t i = row_block * kMaskBits + threadIdx.x;
  const float ix1 = x1[i], ix2 = x2[i], iarea = areas[i];
  unsigned long long bits = 0;
  for (int k = row_block == col_block ? threadIdx.x + 1 : 0; k < col_size; ++k)
    if (iou_rn(ix1, ix2, iarea, cx1[k], cx2[k], carea[k]) >= thr) bits |= 1ULL << k;
  mask[i * n_blocks + col_block] = bits;
}

// Hard NMS, step 2 (host): the greedy pass over the bit mask; returns kept ranks.
std::vector<int64_t> reduce_mask(const at::Tensor& mask_cpu, int64_t n, int64_t n_blocks) {
  const auto* mask = reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(n_blocks, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (removed[i / kMaskBits] & (1ULL << (i % kMaskBits))) continue;
    keep.push_back(i);
    for (int64_t b = i / kMaskBits; b < n_blocks; ++b) removed[b] |= mask[i * n_blocks + b];
  }
  return keep;
}

struct ArgMaxItem {
  float score;
  int64_t pos;
};

// Highest score; among equal scores the smallest position (= the CPU kernel's strict-'<'
// linear scan, where the first maximum wins).
struct FirstMax {
  __device__ __forceinline__ ArgMaxItem operator()(const ArgMaxItem& a, const ArgMaxItem& b) const {
    if (a.score > b.score) return a;
    if (b.score > a.score) return b;
    return a.pos <= b.pos ? a : b;
  }
};

struct SoftNmsArrays {  // working copies, permuted in place exactly as on the CPU
  float* x1;
  float* x2;
  float* areas;
  float* sc;
  int64_t* inds;
  float* dets;     // [n, 3] output rows
  int64_t* holes;  // scratch [n]: dropped slots to refill, increasing position
  int64_t* donors; // scratch [n]: surviving slots past the new end, decreasing position
};

__device__ __forceinline__ void move_slot(const SoftNmsArrays& a, int64_t dst, int64_t src) {
  a.x1[dst] = a.x1[src], a.x2[dst] = a.x2[src], a.areas[dst] = a.areas[src];
  a.sc[dst] = a.sc[src], a.inds[dst] = a.inds[src];
}

// Visits the positions p = first + step * t, t = 0..count-1, and writes to out[0..] (in visit
// order) those whose "dropped" state (score < min_score) equals `dropped`; returns how many.
// Every thread of the block must call it (it contains block-wide scans and barriers).
template <typename Scan>
__device__ int64_t block_compact(typename Scan::TempStorage& tmp, const float* sc,
                                 float min_score, int64_t first, int64_t step, int64_t count,
                                 bool dropped, int64_t* out) {
  int64_t base = 0;
  for (int64_t t = 0; t < count; t += kSoftThreads) {
    const int64_t p = first + step * (t + threadIdx.x);
    const int flag = (t + threadIdx.x < count && (sc[p] < min_score) == dropped) ? 1 : 0;
    int rank = 0, total = 0;
    Scan(tmp).ExclusiveSum(flag, rank, total);
    if (flag) out[base + rank] = p;
    base += total;
    __syncthreads();  // tmp is reused by the next tile
  }
  return base;
}

// Soft-NMS with one block. Per selected segment: (1) first max of sc[i, n) swapped to slot i;
// (2) every later score decayed once; (3) the CPU kernel's "swap the dropped one with the last
// active one" pass, done in parallel: the k-th dropped slot in [i+1, m) receives the k-th
// surviving slot of [m, n) counted from the end, m = i + 1 + #survivors. This is exactly where
// the sequential pass moves them, so the order (and later tie-breaking) is unchanged.
__global__ void __launch_bounds__(kSoftThreads)
    soft_nms_kernel(SoftNmsArrays a, int64_t n_init, float thr, float sigma, float min_score,
                    int method, int64_t* __restrict__ n_out) {
  using ArgMaxReduce = cub::BlockReduce<ArgMaxItem, kSoftThreads>;
  using CountReduce = cub::BlockReduce<int, kSoftThreads>;
  using Scan = cub::BlockScan<int, kSoftThreads>;
  __shared__ union {
    typename ArgMaxReduce::TempStorage argmax;
    typename CountReduce::TempStorage count;
    typename Scan::TempStorage scan;
  } tmp;
  __shared__ int64_t s_n, s_m;
  __shared__ float s_x1, s_x2, s_area;
  if (threadIdx.x == 0) s_n = n_init;
  __syncthreads();

  for (int64_t i = 0; i < s_n; ++i) {
    const int64_t n = s_n;
    ArgMaxItem local{-CUDART_INF_F, INT64_MAX};
    for (int64_t p = i + threadIdx.x; p < n; p += kSoftThreads)
      local = FirstMax()(local, ArgMaxItem{a.sc[p], p});
    const ArgMaxItem best = ArgMaxReduce(tmp.argmax).Reduce(local, FirstMax());
    if (threadIdx.x == 0) {
      const float bx1 = a.x1[best.pos], bx2 = a.x2[best.pos], bsc = a.sc[best.pos];
      const float barea = a.areas[best.pos];
      const int64_t bind = a.inds[best.pos];
      move_slot(a, best.pos, i);
      a.x1[i] = bx1, a.x2[i] = bx2, a.sc[i] = bsc, a.areas[i] = barea, a.inds[i] = bind;
      a.dets[i * 3 + 0] = bx1, a.dets[i * 3 + 1] = bx2, a.dets[i * 3 + 2] = bsc;
      s_x1 = bx1, s_x2 = bx2, s_area = barea;
    }
    __syncthreads();

    int survivors = 0;
    for (int64_t p = i + 1 + threadIdx.x; p < n; p += kSoftThreads) {
      const float ovr = iou_rn(s_x1, s_x2, s_area, a.x1[p], a.x2[p], a.areas[p]);
      a.sc[p] = __fmul_rn(a.sc[p], soft_weight_rn(ovr, thr, sigma, method));
      survivors += a.sc[p] < min_score ? 0 : 1;
    }
    const int total = CountReduce(tmp.count).Sum(survivors);  // valid in thread 0 only
    if (threadIdx.x == 0) s_m = i + 1 + total;
    __syncthreads();

    const int64_t m = s_m;
    // dropped slots of [i+1, m), ascending; surviving slots of [m, n), descending
    const int64_t n_holes =
        block_compact<Scan>(tmp.scan, a.sc, min_score, i + 1, 1, m - (i + 1), true, a.holes);
    block_compact<Scan>(tmp.scan, a.sc, min_score, n - 1, -1, n - m, false, a.donors);
    __syncthreads();  // make the scratch lists visible to every thread
    for (int64_t k = threadIdx.x; k < n_holes; k += kSoftThreads)
      move_slot(a, a.holes[k], a.donors[k]);
    if (threadIdx.x == 0) s_n = m;
    __syncthreads();
  }
  if (threadIdx.x == 0) *n_out = s_n;
}

at::Tensor column(const at::Tensor& segs, int64_t col) {
  return segs.select(1, col).clone(at::MemoryFormat::Contiguous);  // always a fresh buffer
}

}  // namespace

at::Tensor nms_1d_cuda(const at::Tensor& segs, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(segs.is_cuda(), "nms_1d_cuda: segs must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(segs.device());
  const int64_t n = segs.size(0);
  if (n == 0) return at::empty({0}, segs.options().dtype(at::kLong));
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/true));
  const at::Tensor sorted = segs.index_select(0, order);  // [N, 2], descending score
  const at::Tensor x1 = column(sorted, 0), x2 = column(sorted, 1);
  const at::Tensor areas = x2 - x1 + 1e-6;
  const int64_t n_blocks = (n + kMaskBits - 1) / kMaskBits;
  at::Tensor mask = at::zeros({n, n_blocks}, segs.options().dtype(at::kLong));
  nms_mask_kernel<<<dim3(n_blocks, n_blocks), kMaskBits, 0, c10::cuda::getCurrentCUDAStream()>>>(
      n, n_blocks, static_cast<float>(iou_threshold), x1.data_ptr<float>(),
      x2.data_ptr<float>(), areas.data_ptr<float>(),
      reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const std::vector<int64_t> keep = reduce_mask(mask.cpu(), n, n_blocks);
  const at::Tensor keep_t = at::tensor(keep, at::kLong).to(segs.device());
  return order.index_select(0, keep_t);
}

std::tuple<at::Tensor, at::Tensor> soft_nms_1d_cuda(const at::Tensor& segs,
                                                    const at::Tensor& scores,
                                                    double iou_threshold, double sigma,
                                                    double min_score, int64_t method) {
  TORCH_CHECK(segs.is_cuda(), "soft_nms_1d_cuda: segs must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(segs.device());
  const int64_t n = segs.size(0);
  at::Tensor dets = at::empty({n, 3}, segs.options());
  if (n == 0) return {at::empty({0}, segs.options().dtype(at::kLong)), dets};
  at::Tensor x1 = column(segs, 0), x2 = column(segs, 1);
  at::Tensor areas = x2 - x1 + 1e-6;
  at::Tensor sc = scores.clone(at::MemoryFormat::Contiguous);
  at::Tensor inds = at::arange(n, segs.options().dtype(at::kLong));
  at::Tensor holes = at::empty({n}, inds.options()), donors = at::empty({n}, inds.options());
  at::Tensor n_out = at::empty({1}, inds.options());
  const SoftNmsArrays arrays{x1.data_ptr<float>(),    x2.data_ptr<float>(),
                             areas.data_ptr<float>(), sc.data_ptr<float>(),
                             inds.data_ptr<int64_t>(), dets.data_ptr<float>(),
                             holes.data_ptr<int64_t>(), donors.data_ptr<int64_t>()};
  soft_nms_kernel<<<1, kSoftThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      arrays, n, static_cast<float>(iou_threshold), static_cast<float>(sigma),
      static_cast<float>(min_score), static_cast<int>(method), n_out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t k = n_out.item<int64_t>();  // synchronises with the kernel
  return {inds.slice(0, 0, k), dets.slice(0, 0, k)};
}

}  // namespace libs_ext

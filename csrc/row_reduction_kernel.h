// The loops of the row reduction (row_reduction.h), compiled twice like the epilogues: portable
// (cpu_kernels.cpp) and for AVX-512 (kernels_avx512.cpp).
//
// Each thread takes a contiguous range of rows. It converts a tile of kTileRows rows of both
// operands to float32, padded with zeros to whole blocks of the micro-kernel (kBlockM rows of
// the result by kBlockN columns), and the micro-kernel adds each block's product over the tile
// into the thread's result; its accumulators (8 x 32 floats, sixteen AVX-512 registers) stay in
// registers for the whole tile. Sums thus run over at most kTileRows products in registers,
// then over tiles; the threads' results are added in thread order at the end, so a result does
// not depend on timing, only on the number of threads.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_kernel_common.h"
#include "row_reduction.h"

namespace nol_fast {
namespace {

constexpr int64_t kTileRows = 128;
// The micro-kernel's block of the result: measured best of 2, 4, 8 by 16, 32, 64 on
// [16, 32 K] @ [32 K, 32] (2 threads, AVX-512): 0.17 ms in bfloat16, 0.23 ms in float32.
constexpr int64_t kBlockM = 8;
constexpr int64_t kBlockN = 32;
// Below this many elements of input the loop runs on one thread (a parallel region costs a few
// microseconds).
constexpr int64_t kParallelMinInputs = 16384;

// The block product behind the row reduction and the fused channel MLP
// (channel_mlp_kernel.h): c (a kBlockM x kBlockN block, row stride ldc) += the sum over
// t < count of p(t, i) q(t, j), with p(t, i) = p[t * p_t + i * p_i] and q(t, j) =
// q[t * ldq + j]. The accumulators stay in registers for all of `count`. As a reduction over
// rows, t is the row (p_t the row stride, p_i = 1); as a GEMM c = a b, i is the row of a,
// t the reduced index (p_t = 1, p_i the row stride of a) and q is b.
inline void micro_kernel(const float* p, int64_t p_t, int64_t p_i, const float* q, int64_t ldq,
                         int64_t count, float* c, int64_t ldc) {
  float acc[kBlockM][kBlockN] = {};
  for (int64_t t = 0; t < count; ++t) {
    const float* p_row = p + t * p_t;
    const float* q_row = q + t * ldq;
    for (int64_t i = 0; i < kBlockM; ++i) {
      const float pi = p_row[i * p_i];
#pragma omp simd
      for (int64_t j = 0; j < kBlockN; ++j) acc[i][j] = madd(pi, q_row[j], acc[i][j]);
    }
  }
  for (int64_t i = 0; i < kBlockM; ++i) {
#pragma omp simd
    for (int64_t j = 0; j < kBlockN; ++j) c[i * ldc + j] += acc[i][j];
  }
}

// total (m_pad x n_pad) += a[begin:end]^T b[begin:end].
template <typename T>
void reduce_range(const RowReduction& args, int64_t begin, int64_t end, int64_t m_pad,
                  int64_t n_pad, float* total) {
  const T* a = static_cast<const T*>(args.a);
  const T* b = static_cast<const T*>(args.b);
  // zero padding: the columns past m and n stay zero for the whole range
  std::vector<float> a_tile(kTileRows * m_pad, 0.0f);
  std::vector<float> b_tile(kTileRows * n_pad, 0.0f);
  for (int64_t start = begin; start < end; start += kTileRows) {
    const int64_t rows = std::min(kTileRows, end - start);
    for (int64_t r = 0; r < rows; ++r) {
      const T* a_row = a + (start + r) * args.lda;
      const T* b_row = b + (start + r) * args.ldb;
      float* a_out = a_tile.data() + r * m_pad;
      float* b_out = b_tile.data() + r * n_pad;
#pragma omp simd
      for (int64_t i = 0; i < args.m; ++i) a_out[i] = to_float(a_row[i]);
#pragma omp simd
      for (int64_t j = 0; j < args.n; ++j) b_out[j] = to_float(b_row[j]);
    }
    for (int64_t i = 0; i < m_pad; i += kBlockM) {
      for (int64_t j = 0; j < n_pad; j += kBlockN) {
        micro_kernel(a_tile.data() + i, m_pad, 1, b_tile.data() + j, n_pad, rows,
                     total + i * n_pad + j, n_pad);
      }
    }
  }
}

// args.out = the sum of the threads' (m_pad x n_pad) results in `partial`, in thread order.
inline void add_partials(const float* partial, int threads, int64_t m_pad, int64_t n_pad,
                         const RowReduction& args) {
  for (int64_t i = 0; i < args.m; ++i) {
    for (int64_t j = 0; j < args.n; ++j) {
      float sum = 0.0f;
      for (int t = 0; t < threads; ++t) sum += partial[(t * m_pad + i) * n_pad + j];
      args.out[i * args.n + j] = sum;
    }
  }
}

template <typename T>
void run_reduction(const RowReduction& args, int num_threads) {
  const int64_t m_pad = round_up(args.m, kBlockM);
  const int64_t n_pad = round_up(args.n, kBlockN);
  const int64_t inputs = args.rows * (args.m + args.n);
  const int threads = inputs >= kParallelMinInputs && num_threads > 1 ? num_threads : 1;
  std::vector<float> partial(static_cast<size_t>(threads * m_pad * n_pad), 0.0f);
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    reduce_range<T>(args, args.rows * id / n, args.rows * (id + 1) / n, m_pad, n_pad,
                    partial.data() + id * m_pad * n_pad);
  }
  add_partials(partial.data(), threads, m_pad, n_pad, args);
}

inline void dispatch_reduction(const RowReduction& args, int num_threads) {
  if (args.storage == Storage::kBFloat16) {
    run_reduction<bf16>(args, num_threads);
  } else {
    run_reduction<float>(args, num_threads);
  }
}

}  // namespace
}  // namespace nol_fast

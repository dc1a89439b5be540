// The bfloat16 kernels that run their products on AMX tiles (kernels_amx.cpp), and whether this
// process may use them. cpu_kernels.cpp calls them for bfloat16 storage when amx_enabled().
#pragma once

#include <cstdint>

#include "channel_mlp.h"
#include "row_reduction.h"

namespace nol_fast {

// Whether the CPU has AMX with bfloat16 (amx-tile, amx-bf16, and the AVX-512 subsets the packing
// uses) and the kernel lets this process use the tile registers (Linux asks each process to
// request them once: arch_prctl(ARCH_REQ_XCOMP_PERM)). Checked once.
bool amx_available();
// Whether the AMX kernels run where they can: amx_available(), unless turned off with
// set_amx_enabled(false) (the FMA kernels then run, as on CPUs without AMX).
bool amx_enabled();
// Turns the AMX kernels on or off for the process; returns the previous setting.
bool set_amx_enabled(bool enabled);

// out (rows, n) = (accumulate: out +) a (rows, k) @ w (k, n) for a channels-last pointwise
// layer in bfloat16: the GEMM of its forward pass (w = W^T) or its input gradient (w = W).
// a and out are bfloat16 with unit column stride; w is the float32 parameter, read through
// strides and rounded to bfloat16 as autocast rounds it. Sums are float32, rounded to bfloat16
// once (after adding out's values).
struct RowsMatmul {
  int64_t rows;
  int64_t k;
  int64_t n;
  const void* a;
  int64_t lda;
  const float* w;
  int64_t w_stride_k;
  int64_t w_stride_n;
  void* out;
  int64_t ldo;
  bool accumulate;
};

// out[l] (rows, rest) = (accumulate: out[l] +) matrix (rows, cols) @ t[l] (cols, rest) for
// l < lead, all bfloat16 and contiguous: a truncated DFT along one grid dimension of a
// channels-last activation (t[l] one line of the grid, its points by its channels), the matrix
// shared by every line. Sums are float32, rounded to bfloat16 once.
struct SharedMatmul {
  int64_t lead;
  int64_t rows;
  int64_t cols;
  int64_t rest;
  const void* matrix;
  const void* t;
  void* out;
  bool accumulate;
};

namespace detail {

void reduce_rows_amx(const RowReduction& args, int num_threads);
void rows_matmul_amx(const RowsMatmul& args, int num_threads);
void channel_mlp_forward_amx(const ChannelMlp& args, int num_threads);
void channel_mlp_backward_amx(const ChannelMlp& args, int num_threads);
void shared_matmul_amx(const SharedMatmul& args, int num_threads);

}  // namespace detail
}  // namespace nol_fast

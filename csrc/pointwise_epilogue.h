// Fused epilogues of the channels-last FNO layers on the CPU: the elementwise work that follows
// (forward) or precedes (backward) each GEMM of a pointwise layer, done in one pass.
//
// A channels-last activation is a (rows, cols) matrix: one row per grid point of every sample,
// one column per channel, so every per-channel parameter (bias, soft-gating factor) is indexed
// by the column. The GEMMs themselves run in torch (MKL / oneDNN); these kernels replace the
// chains of bias adds, skip sums, activations, activation gradients and per-channel reductions
// that would otherwise read and write the whole activation once per operation.
//
// Activations are stored as float32 or bfloat16 (the layers' autocast dtype); arithmetic is in
// float32 and per-channel reductions accumulate in double, so results do not depend on the
// number of threads beyond float32 rounding of the stored values. Like the optimizer kernels,
// the Python side (nol_fast/ops/pointwise/epilogue.py) passes tensors as addresses, so nothing
// here includes torch headers.
#pragma once

#include <cstdint>

namespace nol_fast {

enum class Activation : int { kNone = 0, kGelu = 1, kRelu = 2, kSilu = 3, kTanh = 4 };
// What the skip path adds: nothing, the input itself, or the input scaled per channel.
enum class SkipKind : int { kNone = 0, kIdentity = 1, kScale = 2 };
enum class Storage : int { kFloat32 = 0, kBFloat16 = 1 };

// pre = y + bias + skip(x); out = act(pre); act_grad = act'(pre) (when not null), stored as
// float32 next to float32 activations and as 16-bit fixed point next to bfloat16 ones (see Q16
// in pointwise_epilogue_kernel.h).
// The backward pass needs act'(pre) rather than pre: kept from here, where exp and erf are
// computed anyway, it spares the backward pass their cost (GELU's gradient costs as much as
// GELU). `out` and `act_grad` may each be `y`'s memory (in place), but not each other's.
struct EpilogueForward {
  int64_t rows;
  int64_t cols;
  const void* y;
  const float* bias;   // (cols)
  const void* x;       // (rows, cols) skip input, null unless skip != kNone
  const float* gamma;  // (cols), kScale only
  void* act_grad;      // (rows, cols) or null; must be null for kNone
  void* out;
  Activation act;
  SkipKind skip;
  Storage storage;
};

// grad_pre = grad_out * act_grad (or grad_out, when act_grad is null); grad_bias = sum over rows
// of grad_pre; grad_gamma = sum over rows of grad_pre * x (kScale); grad_x (+)= grad_pre * gamma
// (kScale) or grad_pre (kIdentity). `grad_pre` may be null when only the sums and grad_x are
// wanted.
struct EpilogueBackward {
  int64_t rows;
  int64_t cols;
  const void* grad_out;
  const void* act_grad;
  void* grad_pre;
  float* grad_bias;   // (cols) or null
  const void* x;      // (rows, cols), kScale only
  const float* gamma;  // (cols), kScale only
  float* grad_gamma;  // (cols), kScale only
  void* grad_x;       // (rows, cols) or null
  bool accumulate_x;  // add into grad_x instead of overwriting it
  SkipKind skip;
  Storage storage;
};

void epilogue_forward(const EpilogueForward& args, int num_threads);
void epilogue_backward(const EpilogueBackward& args, int num_threads);

}  // namespace nol_fast

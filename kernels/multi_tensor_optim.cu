// Multi-tensor Adam/AdamW and AdaBound steps: one CUDA launch updates a whole list of tensors.
//
// This is a port of the Triton kernel in nol_fast/ops/triton/optim.py (_multi_tensor_step_kernel
// and _update_chunk). It reads the same tables and does the same float32 arithmetic in the same
// order, every operation rounded to nearest even as PyTorch and the Triton interpreter do, so
// that the backends compute the same step. (The Triton kernel is compiled without fused
// multiply-adds and uses tl.div_rn and tl.sqrt_rn, so compiled Triton rounds alike.)
//
// Tables
// ------
// The host code builds these tables (nol_fast.ops.optim_step.tables, which also feeds the
// Triton kernel: tables(), adam_coefficients(), adabound_coefficients()); all three live in
// device memory:
//
//   meta    int64, n_tensors rows of 6: the addresses of param, grad, exp_avg, exp_avg_sq and
//           max_exp_avg_sq (0 when unused), then numel.
//   chunks  int64, n_chunks rows of 2: tensor id (a row of meta), first element of the chunk.
//           Chunk starts are multiples of `block`; only non-empty tensors have chunks.
//   coefs   float32, n_tensors rows of 4, folded from the per-tensor step counts t (by torch
//           ops on the device, so no step count is read back):
//             Adam/AdamW: lr / (1 - beta1^t), sqrt(1 - beta2^t), 0, 1 - lr * weight_decay
//             AdaBound:   lr * sqrt(1 - beta2^t) / (1 - beta1^t), lower bound, upper bound,
//                         1 - lr * weight_decay
//           (the decay factor is a coefficient so that a tensor lr needs no host read)
//
// Params are float32, bfloat16 or float16 (one dtype for all), grads one such dtype, and the
// moments float32. All arithmetic is float32; a bfloat16 param is rounded to nearest even by
// hand, exactly as the Triton kernel does, and a NaN stays a NaN.
//
// `grad_scale` and `found_inf` (mixed-precision loss scaling) are read on the device: the
// gradient is divided by grad_scale, and nothing at all is written while found_inf is nonzero,
// so a skipped step costs no host synchronisation.
//
// Launch: one CUDA block per chunk (grid = n_chunks); its threads stride over the chunk. A full
// chunk whose addresses are all 16-byte aligned goes four elements at a time (16-byte accesses
// for the float32 streams, 8-byte ones for 16-bit params and grads), any other chunk element by
// element up to numel.
//
// Rounding: the update uses __fadd_rn, __fsub_rn, __fmul_rn, __fdiv_rn and __fsqrt_rn, which are
// never contracted into FMAs nor replaced by approximations, so the rounding of every operation
// is that of the formulas whatever the compiler flags (--use_fast_math included; its -ftz=true
// would still flush float32 subnormals to zero).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

constexpr int kThreads = 256;       // 8 warps, as the Triton launch (num_warps=8)
constexpr int kVec = 4;             // elements per vector access: 16 bytes of float32
constexpr int64_t kMaxBlock = 65536;

// Bits of `flags`; the kernel is instantiated for every combination.
constexpr int kAdaBound = 1;
constexpr int kAmsGrad = 2;         // amsbound for AdaBound
constexpr int kMaximize = 4;
constexpr int kDecoupled = 8;       // AdamW-style decay of the param instead of L2 on the grad
constexpr int kFlagCombinations = 16;

// Dtype codes of the C entry point.
constexpr int kFloat32 = 0;
constexpr int kBFloat16 = 1;
constexpr int kFloat16 = 2;

// The scalars of one launch, passed by value.
struct StepArgs {
  const int64_t* meta;
  const int64_t* chunks;
  const float* coefs;
  const float* grad_scale;  // or nullptr
  const float* found_inf;   // or nullptr
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float eps;
  float weight_decay;
  int block;
};

// The per-tensor coefficients and the gradient scale, read once per chunk.
struct ChunkCoefs {
  float c0, c1, c2;
  float decay_factor;
  float grad_scale;
  bool has_grad_scale;
};

// Four elements as one access: the alignment makes it a single 16-byte (float) or 8-byte
// (bfloat16, float16) load or store.
template <typename T>
struct alignas(kVec * sizeof(T)) Vec4 {
  T val[kVec];
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);

template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}

// Round to nearest even by hand, bit for bit as the Triton kernel's _to_param_dtype: add just
// under half a bfloat16 ulp plus the kept lowest bit (ties to even), and map every NaN to the
// quiet NaN 0x7FC0 (the carry could otherwise turn a NaN into an infinity).
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  const uint32_t bits = __float_as_uint(x);
  const bool is_nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return __ushort_as_bfloat16(static_cast<unsigned short>(is_nan ? 0x7FC0u : rounded));
}

template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

bool is_dtype_code(int code) { return code == kFloat32 || code == kBFloat16 || code == kFloat16; }

template <typename T>
__device__ __forceinline__ T* address_to_pointer(int64_t address) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(address));
}

// The update of one element, in the order of the Triton kernel's _update_chunk. `m`, `v` and
// `vmax` are updated in place (`vmax` only with kAmsGrad); returns the new param in float32.
template <int FLAGS>
__device__ __forceinline__ float update_element(float p, float g, float& m, float& v, float& vmax,
                                                const ChunkCoefs& c, const StepArgs& a) {
  constexpr bool kIsAdaBound = (FLAGS & kAdaBound) != 0;
  constexpr bool kIsAmsGrad = (FLAGS & kAmsGrad) != 0;
  if (c.has_grad_scale) g = __fdiv_rn(g, c.grad_scale);
  if constexpr ((FLAGS & kMaximize) != 0) g = -g;
  if constexpr ((FLAGS & kDecoupled) != 0) {
    p = __fmul_rn(p, c.decay_factor);
  } else {
    g = __fadd_rn(g, __fmul_rn(a.weight_decay, p));
  }
  if constexpr (kIsAdaBound) {
    // exp_avg.mul_(beta1).add_(1 - beta1, grad), as the adabound package
    m = __fadd_rn(__fmul_rn(m, __fsub_rn(1.0f, a.one_minus_beta1)),
                  __fmul_rn(a.one_minus_beta1, g));
  } else {
    // exp_avg.lerp_(grad, 1 - beta1), as torch.optim.Adam
    m = __fadd_rn(m, __fmul_rn(a.one_minus_beta1, __fsub_rn(g, m)));
  }
  v = __fadd_rn(__fmul_rn(v, a.beta2), __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
  float v_hat = v;
  if constexpr (kIsAmsGrad) {
    // fmaxf returns the non-NaN operand, as tl.maximum (maxnum) in both Triton backends
    vmax = fmaxf(vmax, v);
    v_hat = vmax;
  }
  if constexpr (kIsAdaBound) {
    // coefficients: step size with both bias corrections, lower and upper bound
    float lr_t = __fdiv_rn(c.c0, __fadd_rn(__fsqrt_rn(v_hat), a.eps));
    lr_t = fminf(fmaxf(lr_t, c.c1), c.c2);
    return __fsub_rn(p, __fmul_rn(lr_t, m));
  } else {
    // coefficients: lr / bias_correction1, sqrt(bias_correction2)
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_hat), c.c1), a.eps);
    return __fadd_rn(p, __fmul_rn(-c.c0, __fdiv_rn(m, denom)));
  }
}

// Updates chunk blockIdx.x of one tensor (see the comment at the top for the tables).
template <typename P, typename G, int FLAGS>
__global__ void __launch_bounds__(kThreads) multi_tensor_step_kernel(const StepArgs a) {
  constexpr bool kIsAmsGrad = (FLAGS & kAmsGrad) != 0;
  const int64_t chunk = blockIdx.x;
  const int64_t tensor = a.chunks[2 * chunk];
  const int64_t start = a.chunks[2 * chunk + 1];
  const int64_t* row = a.meta + 6 * tensor;
  const int64_t numel = row[5];
  if (numel <= start || (a.found_inf != nullptr && *a.found_inf != 0.0f)) return;

  // The tensors never overlap (separate allocations), hence __restrict__.
  P* __restrict__ param = address_to_pointer<P>(row[0]) + start;
  const G* __restrict__ grad = address_to_pointer<const G>(row[1]) + start;
  float* __restrict__ exp_avg = address_to_pointer<float>(row[2]) + start;
  float* __restrict__ exp_avg_sq = address_to_pointer<float>(row[3]) + start;
  float* __restrict__ max_exp_avg_sq =
      kIsAmsGrad ? address_to_pointer<float>(row[4]) + start : nullptr;

  const float* coef = a.coefs + 4 * tensor;
  ChunkCoefs c;
  c.c0 = coef[0];
  c.c1 = coef[1];
  c.c2 = coef[2];
  c.decay_factor = coef[3];
  c.has_grad_scale = a.grad_scale != nullptr;
  c.grad_scale = c.has_grad_scale ? *a.grad_scale : 1.0f;

  const int64_t remaining = numel - start;
  const int len = remaining < a.block ? static_cast<int>(remaining) : a.block;
  const int64_t addresses = row[0] | row[1] | row[2] | row[3] | (kIsAmsGrad ? row[4] : 0);
  const bool vectorised =
      len == a.block && a.block % kVec == 0 && start % kVec == 0 && addresses % 16 == 0;

  if (vectorised) {
    for (int i = threadIdx.x * kVec; i < len; i += kThreads * kVec) {
      const Vec4<P> p_in = *reinterpret_cast<const Vec4<P>*>(param + i);
      const Vec4<G> g_in = *reinterpret_cast<const Vec4<G>*>(grad + i);
      Vec4<float> m = *reinterpret_cast<const Vec4<float>*>(exp_avg + i);
      Vec4<float> v = *reinterpret_cast<const Vec4<float>*>(exp_avg_sq + i);
      Vec4<float> vmax{};
      if constexpr (kIsAmsGrad) vmax = *reinterpret_cast<const Vec4<float>*>(max_exp_avg_sq + i);
      Vec4<P> p_out;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float p = update_element<FLAGS>(to_float(p_in.val[k]), to_float(g_in.val[k]),
                                              m.val[k], v.val[k], vmax.val[k], c, a);
        p_out.val[k] = from_float<P>(p);
      }
      if constexpr (kIsAmsGrad) *reinterpret_cast<Vec4<float>*>(max_exp_avg_sq + i) = vmax;
      *reinterpret_cast<Vec4<float>*>(exp_avg + i) = m;
      *reinterpret_cast<Vec4<float>*>(exp_avg_sq + i) = v;
      *reinterpret_cast<Vec4<P>*>(param + i) = p_out;
    }
  } else {
    for (int i = threadIdx.x; i < len; i += kThreads) {
      float m = exp_avg[i];
      float v = exp_avg_sq[i];
      float vmax = kIsAmsGrad ? max_exp_avg_sq[i] : 0.0f;
      const float p = update_element<FLAGS>(to_float(param[i]), to_float(grad[i]), m, v, vmax,
                                            c, a);
      if constexpr (kIsAmsGrad) max_exp_avg_sq[i] = vmax;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      param[i] = from_float<P>(p);
    }
  }
}

// Launches the instantiation for `flags`; the entry point has checked the codes, so the
// cudaErrorInvalidValue branches of the dispatch are never taken.
template <typename P, typename G, int F = 0>
cudaError_t launch_for_flags(int flags, const StepArgs& args, unsigned int grid,
                             cudaStream_t stream) {
  if constexpr (F < kFlagCombinations) {
    if (flags != F) return launch_for_flags<P, G, F + 1>(flags, args, grid, stream);
    multi_tensor_step_kernel<P, G, F><<<grid, kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  } else {
    return cudaErrorInvalidValue;
  }
}

template <typename P>
cudaError_t launch_for_grad_dtype(int grad_dtype, int flags, const StepArgs& args,
                                  unsigned int grid, cudaStream_t stream) {
  switch (grad_dtype) {
    case kFloat32:
      return launch_for_flags<P, float>(flags, args, grid, stream);
    case kBFloat16:
      return launch_for_flags<P, __nv_bfloat16>(flags, args, grid, stream);
    case kFloat16:
      return launch_for_flags<P, __half>(flags, args, grid, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

// One Adam/AdamW (flags bit 0 clear) or AdaBound (bit 0 set) step over all chunks of the tables,
// launched on `stream` (a cudaStream_t). Dtype codes: 0 float32, 1 bfloat16, 2 float16. Flags:
// bit 0 adabound, bit 1 amsgrad (amsbound), bit 2 maximize, bit 3 decoupled weight decay.
// Returns a cudaError_t: cudaGetLastError() after the launch, cudaSuccess without a launch when
// there are no chunks, cudaErrorInvalidValue for a bad dtype code, block size, chunk count or
// flag bit, or a missing table.
extern "C" __attribute__((visibility("default"))) int nol_fast_multi_tensor_step_cuda(
    const int64_t* meta, const int64_t* chunks, int64_t n_chunks, int64_t block,
    const float* coefs, const float* grad_scale, const float* found_inf, float one_minus_beta1,
    float beta2, float one_minus_beta2, float eps, float weight_decay, int param_dtype,
    int grad_dtype, int flags, void* stream) {
  const bool power_of_two = block > 0 && (block & (block - 1)) == 0;
  if (!power_of_two || block > kMaxBlock || n_chunks < 0 || n_chunks > INT32_MAX ||
      !is_dtype_code(param_dtype) || !is_dtype_code(grad_dtype) || flags < 0 ||
      flags >= kFlagCombinations) {
    return cudaErrorInvalidValue;
  }
  if (n_chunks == 0) return cudaSuccess;
  if (meta == nullptr || chunks == nullptr || coefs == nullptr) return cudaErrorInvalidValue;

  const StepArgs args{meta, chunks, coefs, grad_scale, found_inf, one_minus_beta1, beta2,
                      one_minus_beta2, eps, weight_decay, static_cast<int>(block)};
  const auto grid = static_cast<unsigned int>(n_chunks);
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  switch (param_dtype) {
    case kFloat32:
      return launch_for_grad_dtype<float>(grad_dtype, flags, args, grid, cuda_stream);
    case kBFloat16:
      return launch_for_grad_dtype<__nv_bfloat16>(grad_dtype, flags, args, grid, cuda_stream);
    case kFloat16:
      return launch_for_grad_dtype<__half>(grad_dtype, flags, args, grid, cuda_stream);
    default:
      return cudaErrorInvalidValue;
  }
}

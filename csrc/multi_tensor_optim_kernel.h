// The element loop of the CPU multi-tensor step, included by two translation units: once as
// is (portable), once under `#pragma GCC target("avx2,fma")` (see multi_tensor_optim_fma.cpp).
//
// The loop templates live in an anonymous namespace, so each translation unit keeps its own
// copy, compiled for its own instruction set; only the plain structs below are shared. This
// header must be included after the standard headers it uses, so that no standard-library
// code is compiled for AVX2 where the portable unit could pick it up.
#pragma once

#include <cmath>
#include <cstdint>

#include "multi_tensor_optim.h"

namespace nol_fast {
namespace detail {

struct Chunk {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

// Per-tensor scalars, rounded to the parameters' precision.
// Adam: a = lr / (1 - beta1^t), b = 1 / sqrt(1 - beta2^t).
// AdaBound: a = lr * sqrt(1 - beta2^t) / (1 - beta1^t), b and c = lower and upper bound.
template <typename T>
struct Coefs {
  T a;
  T b;
  T c;
};

// Group-wide scalars, rounded to the parameters' precision.
template <typename T>
struct Uniform {
  T lerp_weight;      // 1 - beta1 (Adam's lerp towards the gradient)
  T lerp_complement;  // 1 - (1 - beta1), as torch's lerp computes it for weights >= 0.5
  bool lerp_small;    // |1 - beta1| < 0.5: torch's lerp then uses m + w * (g - m)
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T eps;
  T weight_decay;
  T decay_factor;  // 1 - lr * weight_decay
  T sign;          // -1 when maximizing, else 1 (negation is exact)
  T grad_scale;
};

// Everything one step needs, for either variant of the loop.
template <typename T>
struct StepArgs {
  const int64_t* table;  // rows of kTableColumns (see multi_tensor_optim.h)
  const Chunk* chunks;
  int64_t n_chunks;
  const Coefs<T>* coefs;  // one per tensor
  Uniform<T> uniform;
  bool adabound;
  bool amsgrad;
  int decay;  // 0 none, 1 L2 on the gradient, 2 decoupled
  bool scale;
};

// Chunk c with fused multiply-adds; defined only where the AVX2+FMA unit is compiled. The
// parallel loop over chunks stays in the portable unit: GCC does not carry a target pragma
// into the functions it outlines for OpenMP regions, which then would not vectorise.
void update_chunk_fused(const StepArgs<float>& args, int64_t c);
void update_chunk_fused(const StepArgs<double>& args, int64_t c);

}  // namespace detail

namespace {

using detail::Coefs;
using detail::StepArgs;
using detail::Uniform;

template <typename T>
inline T* address(int64_t value) {
  return reinterpret_cast<T*>(static_cast<intptr_t>(value));
}

// NaN-propagating maximum of a and b, as torch.maximum.
template <typename T>
inline T maximum(T a, T b) {
  return ((a < b) | (b != b)) ? b : a;
}

// Clamp to [lo, hi] keeping NaN, as Tensor.clamp_.
template <typename T>
inline T clamp(T x, T lo, T hi) {
  const T low = x < lo ? lo : x;
  return hi < low ? hi : low;
}

// a * b + c, rounded once (fused) or twice.
template <bool kFused, typename T>
inline T madd(T a, T b, T c) {
  if (kFused) return std::fma(a, b, c);
  return a * b + c;
}

// One chunk of one tensor. kDecay: 0 none, 1 L2 on the gradient, 2 decoupled.
template <typename T, bool kFused, bool kAdabound, bool kAms, int kDecay, bool kScale>
inline void update(const int64_t* row, const Coefs<T>& k, const Uniform<T>& u, int64_t begin,
                   int64_t end) {
  T* __restrict__ p = address<T>(row[0]);
  const T* __restrict__ g = address<T>(row[1]);
  T* __restrict__ m = address<T>(row[2]);
  T* __restrict__ v = address<T>(row[3]);
  T* __restrict__ vmax = kAms ? address<T>(row[4]) : nullptr;
  // As a number rather than a bool, which has no vector type and would stop vectorisation.
  const T lerp_small = u.lerp_small ? T(1) : T(0);
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    T grad = g[i];
    if (kScale) grad = grad / u.grad_scale;
    if (!kAdabound) grad = u.sign * grad;  // maximize, before the weight decay as in torch
    T param = p[i];
    if (kDecay == 1) grad = madd<kFused>(u.weight_decay, param, grad);  // grad.add(p, alpha=wd)
    if (kDecay == 2) param = param * u.decay_factor;
    T mi = m[i];
    if (kAdabound) {
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
      mi = madd<kFused>(u.one_minus_beta1, grad, mi * u.beta1);
    } else {
      // exp_avg.lerp_(grad, 1 - beta1), with torch's two formulas
      const T diff = grad - mi;
      const T near_m = madd<kFused>(u.lerp_weight, diff, mi);
      const T near_g = madd<kFused>(-u.lerp_complement, diff, grad);
      mi = lerp_small != T(0) ? near_m : near_g;
    }
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const T vi = madd<kFused>(u.one_minus_beta2 * grad, grad, v[i] * u.beta2);
    T second = vi;
    if (kAms) {
      second = maximum(vmax[i], vi);
      vmax[i] = second;
    }
    if (kAdabound) {
      // full_like(denom, step_size).div_(sqrt(v) + eps).clamp_(lower, upper).mul_(exp_avg)
      const T rate = clamp(k.a / (std::sqrt(second) + u.eps), k.b, k.c);
      param = param - rate * mi;
    } else {
      // param.addcdiv_(exp_avg, sqrt(v) / sqrt(bias_correction2) + eps, value=-step_size),
      // with the division by the per-tensor constant as a multiplication by its reciprocal:
      // one division per element instead of two, which the loop's speed depends on.
      const T denom = std::sqrt(second) * k.b + u.eps;
      param = param + (-k.a) * mi / denom;
    }
    m[i] = mi;
    v[i] = vi;
    p[i] = param;
  }
}

// Chunk c of a step: the runtime flags turned into template arguments, then the loop.
template <typename T, bool kFused, bool kAdabound, bool kAms, int kDecay>
void update_scaled(const StepArgs<T>& a, const detail::Chunk& chunk) {
  const int64_t* row = &a.table[chunk.tensor * kTableColumns];
  const Coefs<T>& k = a.coefs[chunk.tensor];
  if (a.scale) {
    update<T, kFused, kAdabound, kAms, kDecay, true>(row, k, a.uniform, chunk.begin, chunk.end);
  } else {
    update<T, kFused, kAdabound, kAms, kDecay, false>(row, k, a.uniform, chunk.begin, chunk.end);
  }
}

template <typename T, bool kFused, bool kAdabound, bool kAms>
void update_decayed(const StepArgs<T>& a, const detail::Chunk& chunk) {
  if (a.decay == 0) {
    update_scaled<T, kFused, kAdabound, kAms, 0>(a, chunk);
  } else if (a.decay == 1) {
    update_scaled<T, kFused, kAdabound, kAms, 1>(a, chunk);
  } else {
    update_scaled<T, kFused, kAdabound, kAms, 2>(a, chunk);
  }
}

template <typename T, bool kFused>
void update_chunk(const StepArgs<T>& a, int64_t c) {
  const detail::Chunk& chunk = a.chunks[c];
  if (a.adabound) {
    a.amsgrad ? update_decayed<T, kFused, true, true>(a, chunk)
              : update_decayed<T, kFused, true, false>(a, chunk);
  } else {
    a.amsgrad ? update_decayed<T, kFused, false, true>(a, chunk)
              : update_decayed<T, kFused, false, false>(a, chunk);
  }
}

}  // namespace
}  // namespace nol_fast

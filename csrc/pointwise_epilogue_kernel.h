// The loops of the fused epilogues (pointwise_epilogue.h), as templates over the storage type,
// the activation, the skip kind and what a call reads and writes. This header is compiled
// twice: portable (cpu_kernels.cpp) and for AVX-512 (kernels_avx512.cpp), each
// translation unit instantiating the templates in its own anonymous namespace.
//
// The inner loops run flat over tiles of whole rows and hold only arithmetic and selects, so the
// compiler vectorises them: the activations use the polynomial exp below rather than libm,
// whose calls would stop vectorisation (and whose vector variants need a newer glibc than the
// wheels target).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_kernel_common.h"
#include "pointwise_epilogue.h"

namespace nol_fast {
namespace {

// An activation's derivative kept next to bfloat16 activations, as 16-bit fixed point on
// [-0.25, 1.25] (step 2.3e-5): every activation here has its derivative in that range (GELU's
// in [-0.17, 1.13], SiLU's in [-0.10, 1.10], tanh's and ReLU's in [0, 1]). Kept as bfloat16
// it would carry a relative error of 2^-9 into every gradient, on top of the one rounding of
// the gradient itself that torch's own bfloat16 backward has; as fixed point it costs the same
// two bytes and adds almost nothing. The top code stands for NaN.
// A distinct integer type (not bf16's uint16_t), so that the conversions overload; the code is
// the int16 value's bits read as unsigned.
using Q16 = int16_t;
constexpr float kQLow = -0.25f;
constexpr float kQStep = 1.5f / 65534.0f;
constexpr int32_t kQNaN = 65535;

inline float to_float(Q16 q) {
  const int32_t code = static_cast<uint16_t>(q);
  const float value = madd_plain(static_cast<float>(code), kQStep, kQLow);
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  // a quiet NaN for the NaN code (OR-ed in: a select of the bits here stops vectorisation)
  bits |= code == kQNaN ? 0x7fc00000u : 0u;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

template <>
inline Q16 from_float<Q16>(float v) {
  float code = madd_plain(v - kQLow, 1.0f / kQStep, 0.5f);
  code = code < 0.0f ? 0.0f : code;
  code = code > 65534.0f ? 65534.0f : code;
  // NaN fails both comparisons above; it is replaced before the (then undefined) conversion
  const bool nan = v != v;
  const int32_t bits = nan ? kQNaN : static_cast<int32_t>(nan ? 0.0f : code);
  return static_cast<Q16>(static_cast<uint16_t>(bits));
}

// The storage of an activation's derivative next to activations stored as T.
template <typename T>
struct GradStorage {
  using type = T;
};
template <>
struct GradStorage<bf16> {
  using type = Q16;
};

// exp(x) for float32 within about 2 ulp: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its
// Taylor series to degree 7 (truncation error below 6e-9), times 2^n built in the exponent
// bits. n is rounded by adding 1.5 * 2^23, which leaves it in the low mantissa bits, so no
// float-to-int conversion happens (NaN passes through as NaN). Inputs are clamped to
// [-87, 88], where the result is a normal float; NonPositive skips the upper clamp for callers
// whose argument is never positive.
template <bool NonPositive = false>
inline float exp_poly(float x) {
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2Hi = 0.693145751953125f;      // ln 2 with a short mantissa: n * hi exact
  constexpr float kLn2Lo = 1.4286068203094172e-6f;  // ln 2 - kLn2Hi
  constexpr float kShift = 12582912.0f;              // 1.5 * 2^23
  x = x < -87.0f ? -87.0f : x;
  if constexpr (!NonPositive) x = x > 88.0f ? 88.0f : x;
  const float shifted = madd(x, kLog2e, kShift);
  const float n = shifted - kShift;
  const float r = madd(-n, kLn2Lo, madd(-n, kLn2Hi, x));
  float p = 1.0f / 5040.0f;
  p = madd(p, r, 1.0f / 720.0f);
  p = madd(p, r, 1.0f / 120.0f);
  p = madd(p, r, 1.0f / 24.0f);
  p = madd(p, r, 1.0f / 6.0f);
  p = madd(p, r, 0.5f);
  p = madd(p, r, 1.0f);
  p = madd(p, r, 1.0f);
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
  uint32_t shift_bits;
  std::memcpy(&shift_bits, &kShift, sizeof shift_bits);
  const uint32_t scale_bits = (shifted_bits - shift_bits + 127u) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// erf(|x| / sqrt 2) and exp(-x^2 / 2) for the exact GELU: Abramowitz & Stegun 7.1.26,
// erf(u) = 1 - t (a1 + t (a2 + ...)) exp(-u^2), t = 1 / (1 + p u), absolute error below
// 1.5e-7 (the rule torch's vectorised CPU erf uses too).
struct GaussTerms {
  float erf_abs;   // erf(|x| / sqrt 2)
  float gauss;     // exp(-x^2 / 2)
};

inline GaussTerms gauss_terms(float x) {
  constexpr float kInvSqrt2 = 0.70710678118654752f;
  const float u = (x < 0.0f ? -x : x) * kInvSqrt2;
  const float t = 1.0f / madd(0.3275911f, u, 1.0f);
  float poly = 1.061405429f;
  poly = madd(poly, t, -1.453152027f);
  poly = madd(poly, t, 1.421413741f);
  poly = madd(poly, t, -0.284496736f);
  poly = madd(poly, t, 0.254829592f);
  const float gauss = exp_poly<true>(-u * u);
  return {madd(-poly * t, gauss, 1.0f), gauss};
}

inline float tanh_poly(float x) {
  const float a = x < 0.0f ? -x : x;
  // Small |x|: the odd Taylor series to x^9 (error below 4e-7 relative at |x| = 0.4), which
  // avoids the cancellation of 1 - 2 / (e^2x + 1) near zero.
  const float x2 = x * x;
  float small = 62.0f / 2835.0f;
  small = madd(small, x2, -17.0f / 315.0f);
  small = madd(small, x2, 2.0f / 15.0f);
  small = madd(small, x2, -1.0f / 3.0f);
  small = madd(small * x2, x, x);
  const float large = 1.0f - 2.0f / (exp_poly(2.0f * a) + 1.0f);
  const float signed_large = x < 0.0f ? -large : large;
  return a < 0.4f ? small : signed_large;
}

// act(v) and act'(v), sharing their exp and erf terms.
struct ValueGrad {
  float value;
  float grad;
};

template <Activation A>
inline ValueGrad activate(float v) {
  if constexpr (A == Activation::kNone) {
    return {v, 1.0f};
  } else if constexpr (A == Activation::kGelu) {
    // GELU(v) = v Phi(v), GELU'(v) = Phi(v) + v phi(v)
    constexpr float kInvSqrt2Pi = 0.3989422804014327f;
    const GaussTerms g = gauss_terms(v);
    const float phi_cdf = 0.5f * (1.0f + (v < 0.0f ? -g.erf_abs : g.erf_abs));
    return {v * phi_cdf, madd(v * kInvSqrt2Pi, g.gauss, phi_cdf)};
  } else if constexpr (A == Activation::kRelu) {
    // NaN stays NaN and passes the gradient, as torch's relu and its backward
    return {v < 0.0f ? 0.0f : v, v <= 0.0f ? 0.0f : 1.0f};
  } else if constexpr (A == Activation::kSilu) {
    const float s = 1.0f / (1.0f + exp_poly(-v));
    return {v * s, s * madd(v, 1.0f - s, 1.0f)};
  } else {
    const float t = tanh_poly(v);
    return {t, madd(-t, t, 1.0f)};
  }
}

// Elements below which the loops run on one thread: a parallel region costs a few
// microseconds, as much as about 16 K elements of work.
constexpr int64_t kParallelMinElements = 16384;
// The loops run over tiles of whole rows of at least this many elements, flat, with the
// per-channel parameters repeated to the tile's length: a loop over one row of a narrow layer
// (16 or 32 channels) is too short to vectorise well (GELU over 32 channels: 0.83 ms per
// 32 K rows one row at a time, 0.5 ms in tiles, one thread).
constexpr int64_t kTileElements = 1024;

inline int threads_for(int64_t elements, int num_threads) {
  return elements >= kParallelMinElements && num_threads > 1 ? num_threads : 1;
}

inline int64_t tile_rows(int64_t cols) { return cols >= kTileElements ? 1 : kTileElements / cols; }

// `values` (cols entries) repeated `rows` times.
inline std::vector<float> repeat_rows(const float* values, int64_t cols, int64_t rows) {
  std::vector<float> tiled(static_cast<size_t>(cols * rows));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(&tiled[r * cols], values, cols * sizeof(float));
  return tiled;
}

// Rows [begin, end) split among the threads of a parallel region, in thread order.
template <typename Body>
void parallel_rows(int64_t rows, int64_t cols, int num_threads, Body body) {
  const int threads = threads_for(rows * cols, num_threads);
#pragma omp parallel num_threads(threads)
  {
    const int n = omp_get_num_threads();
    const int id = omp_get_thread_num();
    body(id, n, rows * id / n, rows * (id + 1) / n);
  }
}

// The forward loop over one tile of `n` elements; with KeepGrad it also stores act'(pre).
template <typename T, Activation A, SkipKind S, bool KeepGrad>
inline void forward_tile(int64_t n, const T* y, const float* bias, const T* x,
                         const float* gamma, typename GradStorage<T>::type* grad, T* out) {
  using G = typename GradStorage<T>::type;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float v = to_float(y[i]) + bias[i];
    if constexpr (S == SkipKind::kIdentity) v += to_float(x[i]);
    if constexpr (S == SkipKind::kScale) v = madd(gamma[i], to_float(x[i]), v);
    const ValueGrad a = activate<A>(v);
    if constexpr (KeepGrad) grad[i] = from_float<G>(a.grad);
    out[i] = from_float<T>(a.value);
  }
}

template <typename T, Activation A, SkipKind S, bool KeepGrad>
void run_forward(const EpilogueForward& a, int num_threads) {
  const int64_t cols = a.cols;
  parallel_rows(a.rows, cols, num_threads, [&](int, int, int64_t begin, int64_t end) {
    const int64_t per_tile = tile_rows(cols);
    const std::vector<float> bias = repeat_rows(a.bias, cols, per_tile);
    const std::vector<float> gamma =
        S == SkipKind::kScale ? repeat_rows(a.gamma, cols, per_tile) : std::vector<float>();
    for (int64_t r = begin; r < end; r += per_tile) {
      const int64_t n = (r + per_tile < end ? per_tile : end - r) * cols;
      const int64_t at = r * cols;
      forward_tile<T, A, S, KeepGrad>(
          n, static_cast<const T*>(a.y) + at, bias.data(),
          S == SkipKind::kNone ? nullptr : static_cast<const T*>(a.x) + at, gamma.data(),
          KeepGrad ? static_cast<typename GradStorage<T>::type*>(a.act_grad) + at : nullptr,
          static_cast<T*>(a.out) + at);
    }
  });
}

// Tiles whose sums add up in float, position by position, before they go to the double totals.
constexpr int64_t kFlushTiles = 16;

// Adds the tile-shaped float sums `tile` (rows x cols) into `total` (cols doubles), and zeroes
// them.
inline void flush_sums(float* tile, int64_t rows, int64_t cols, double* total) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      total[c] += tile[r * cols + c];
      tile[r * cols + c] = 0.0f;
    }
  }
}

// The backward loop over one tile of `n` elements. What it reads and writes is fixed at
// compile time (a run-time test inside the loop keeps it from vectorising well: 10x slower in
// bfloat16).
template <typename T, SkipKind S, bool HasGrad, bool WritePre, bool WriteX, bool Accumulate>
inline void backward_tile(int64_t n, const T* g_out, const typename GradStorage<T>::type* act_grad,
                          T* g_pre, const T* x, const float* gamma, T* g_x, float* bb,
                          float* bg) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float d = to_float(g_out[i]);
    if constexpr (HasGrad) d *= to_float(act_grad[i]);
    // Sums and the skip gradient use the value as stored, as a chain of separate ops would.
    const T d_stored = from_float<T>(d);
    const float ds = to_float(d_stored);
    if constexpr (WritePre) g_pre[i] = d_stored;
    bb[i] += ds;
    if constexpr (S == SkipKind::kScale) bg[i] = madd(ds, to_float(x[i]), bg[i]);
    if constexpr (WriteX) {
      float gx = ds;
      if constexpr (S == SkipKind::kScale) gx = ds * gamma[i];
      if constexpr (Accumulate) gx += to_float(g_x[i]);
      g_x[i] = from_float<T>(gx);
    }
  }
}

// One thread's share of the backward pass; its per-channel sums go to `bias_sum` and
// `gamma_sum` (cols doubles each). Each position of a tile sums in float over kFlushTiles
// tiles, then goes to the double totals.
template <typename T, SkipKind S, bool HasGrad, bool WritePre, bool WriteX, bool Accumulate>
void backward_rows(const EpilogueBackward& a, int64_t begin, int64_t end, double* bias_sum,
                   double* gamma_sum) {
  const int64_t cols = a.cols;
  const int64_t per_tile = tile_rows(cols);
  const std::vector<float> gamma =
      S == SkipKind::kScale ? repeat_rows(a.gamma, cols, per_tile) : std::vector<float>();
  std::vector<float> tile_bias(static_cast<size_t>(cols * per_tile), 0.0f);
  std::vector<float> tile_gamma(static_cast<size_t>(cols * per_tile), 0.0f);
  int64_t tiles = 0;
  for (int64_t r = begin; r < end; r += per_tile) {
    const int64_t n = (r + per_tile < end ? per_tile : end - r) * cols;
    const int64_t at = r * cols;
    backward_tile<T, S, HasGrad, WritePre, WriteX, Accumulate>(
        n, static_cast<const T*>(a.grad_out) + at,
        HasGrad ? static_cast<const typename GradStorage<T>::type*>(a.act_grad) + at : nullptr,
        WritePre ? static_cast<T*>(a.grad_pre) + at : nullptr,
        S == SkipKind::kScale ? static_cast<const T*>(a.x) + at : nullptr, gamma.data(),
        WriteX ? static_cast<T*>(a.grad_x) + at : nullptr, tile_bias.data(), tile_gamma.data());
    if (++tiles % kFlushTiles == 0 || r + per_tile >= end) {
      flush_sums(tile_bias.data(), per_tile, cols, bias_sum);
      if constexpr (S == SkipKind::kScale) flush_sums(tile_gamma.data(), per_tile, cols, gamma_sum);
    }
  }
}

template <typename T, SkipKind S, bool HasGrad, bool WritePre, bool WriteX, bool Accumulate>
void run_backward(const EpilogueBackward& a, int num_threads) {
  const int64_t cols = a.cols;
  const int threads = threads_for(a.rows * cols, num_threads);
  // Per-thread sums, added in thread order below so that a run is deterministic.
  std::vector<double> sums(static_cast<size_t>(2 * cols * threads), 0.0);
  int used = 1;
  parallel_rows(a.rows, cols, threads, [&](int id, int n, int64_t begin, int64_t end) {
    if (id == 0) used = n;
    double* mine = sums.data() + 2 * cols * id;
    backward_rows<T, S, HasGrad, WritePre, WriteX, Accumulate>(a, begin, end, mine,
                                                                mine + cols);
  });
  for (int64_t c = 0; c < cols; ++c) {
    double bias = 0.0;
    double gamma = 0.0;
    for (int t = 0; t < used; ++t) {
      bias += sums[2 * cols * t + c];
      gamma += sums[2 * cols * t + cols + c];
    }
    if (a.grad_bias != nullptr) a.grad_bias[c] = static_cast<float>(bias);
    if (S == SkipKind::kScale && a.grad_gamma != nullptr) a.grad_gamma[c] = static_cast<float>(gamma);
  }
}

// A run-time flag as a compile-time one: calls f(std::true_type{}) or f(std::false_type{}).
template <typename F>
void with_flag(bool flag, F f) {
  if (flag) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// A run-time storage type as a compile-time one: calls f(float{}) or f(bf16{}).
template <typename F>
void with_storage(Storage storage, F f) {
  if (storage == Storage::kBFloat16) {
    f(bf16{});
  } else {
    f(float{});
  }
}

// A run-time activation as a compile-time one: calls f(std::integral_constant<Activation, A>{}).
template <typename F>
void with_activation(Activation act, F f) {
  switch (act) {
    case Activation::kGelu:
      return f(std::integral_constant<Activation, Activation::kGelu>{});
    case Activation::kRelu:
      return f(std::integral_constant<Activation, Activation::kRelu>{});
    case Activation::kSilu:
      return f(std::integral_constant<Activation, Activation::kSilu>{});
    case Activation::kTanh:
      return f(std::integral_constant<Activation, Activation::kTanh>{});
    default:
      return f(std::integral_constant<Activation, Activation::kNone>{});
  }
}

// A run-time storage type and skip kind as compile-time ones.
template <typename Args, typename F>
void with_storage_and_skip(const Args& a, F f) {
  with_storage(a.storage, [&](auto storage_tag) {
    switch (a.skip) {
      case SkipKind::kIdentity:
        return f(storage_tag, std::integral_constant<SkipKind, SkipKind::kIdentity>{});
      case SkipKind::kScale:
        return f(storage_tag, std::integral_constant<SkipKind, SkipKind::kScale>{});
      default:
        return f(storage_tag, std::integral_constant<SkipKind, SkipKind::kNone>{});
    }
  });
}

inline void dispatch_forward(const EpilogueForward& a, int num_threads) {
  with_storage_and_skip(a, [&](auto storage_tag, auto skip_tag) {
    using T = decltype(storage_tag);
    constexpr SkipKind S = decltype(skip_tag)::value;
    with_flag(a.act_grad != nullptr, [&](auto keep_grad) {
      with_activation(a.act, [&](auto activation_tag) {
        constexpr Activation A = decltype(activation_tag)::value;
        // without an activation there is no derivative to keep
        constexpr bool K = decltype(keep_grad)::value && A != Activation::kNone;
        run_forward<T, A, S, K>(a, num_threads);
      });
    });
  });
}

inline void dispatch_backward(const EpilogueBackward& a, int num_threads) {
  with_storage_and_skip(a, [&](auto storage_tag, auto skip_tag) {
    using T = decltype(storage_tag);
    constexpr SkipKind S = decltype(skip_tag)::value;
    const bool write_x = S != SkipKind::kNone && a.grad_x != nullptr;
    with_flag(a.act_grad != nullptr, [&](auto has_grad) {
      with_flag(a.grad_pre != nullptr, [&](auto write_pre) {
        with_flag(write_x, [&](auto x) {
          with_flag(write_x && a.accumulate_x, [&](auto accumulate) {
            run_backward<T, S, decltype(has_grad)::value, decltype(write_pre)::value,
                         decltype(x)::value, decltype(accumulate)::value>(a, num_threads);
          });
        });
      });
    });
  });
}

}  // namespace
}  // namespace nol_fast

// The loops of the fused epilogues (pointwise_epilogue.h), as templates over the storage type,
// the activation and the skip kind. This header is compiled twice: portable
// (pointwise_epilogue.cpp) and for AVX-512 (pointwise_epilogue_avx512.cpp), each translation unit
// instantiating the templates in its own anonymous namespace.
//
// The inner loops run over the channels of one row, contiguous in memory, and hold only
// arithmetic and selects, so the compiler vectorises them: the activations use the polynomial
// exp below rather than libm, whose calls would stop vectorisation (and whose vector variants
// need a newer glibc than the wheels target).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "pointwise_epilogue.h"

namespace nol_fast {
namespace {

using bf16 = uint16_t;

inline float to_float(float v) { return v; }
inline float to_float(bf16 v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
inline T from_float(float v);
template <>
inline float from_float<float>(float v) {
  return v;
}
// Round to nearest even, as torch's float -> bfloat16 conversion; NaN stays a (quiet) NaN.
template <>
inline bf16 from_float<bf16>(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t quiet = (bits >> 16) | 0x40u;
  return static_cast<bf16>((bits & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

// a * b + c, fused where the translation unit targets FMA (the AVX-512 one): the polynomials
// below then take half the instructions.
inline float madd(float a, float b, float c) {
#ifdef NOL_FAST_EPILOGUE_FMA
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x) for float32 within about 2 ulp: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its
// Taylor series to degree 7 (truncation error below 6e-9), times 2^n built in the exponent
// bits. n is rounded by adding 1.5 * 2^23, which leaves it in the low mantissa bits, so no
// float-to-int conversion happens (NaN passes through as NaN). Inputs are clamped to
// [-87, 88], where the result is a normal float.
inline float exp_poly(float x) {
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2Hi = 0.693145751953125f;      // ln 2 with a short mantissa: n * hi exact
  constexpr float kLn2Lo = 1.4286068203094172e-6f;  // ln 2 - kLn2Hi
  constexpr float kShift = 12582912.0f;              // 1.5 * 2^23
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
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
  const float gauss = exp_poly(-u * u);
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

template <Activation A>
inline float activate(float v) {
  if constexpr (A == Activation::kNone) {
    return v;
  } else if constexpr (A == Activation::kGelu) {
    const GaussTerms g = gauss_terms(v);
    const float erf_v = v < 0.0f ? -g.erf_abs : g.erf_abs;
    return 0.5f * v * (1.0f + erf_v);
  } else if constexpr (A == Activation::kRelu) {
    return v < 0.0f ? 0.0f : v;  // NaN stays NaN, as torch.relu
  } else if constexpr (A == Activation::kSilu) {
    return v / (1.0f + exp_poly(-v));
  } else {
    return tanh_poly(v);
  }
}

// d act / d v at the pre-activation v.
template <Activation A>
inline float activate_grad(float v) {
  if constexpr (A == Activation::kNone) {
    return 1.0f;
  } else if constexpr (A == Activation::kGelu) {
    constexpr float kInvSqrt2Pi = 0.3989422804014327f;
    const GaussTerms g = gauss_terms(v);
    const float erf_v = v < 0.0f ? -g.erf_abs : g.erf_abs;
    return 0.5f * (1.0f + erf_v) + v * kInvSqrt2Pi * g.gauss;
  } else if constexpr (A == Activation::kRelu) {
    return v <= 0.0f ? 0.0f : 1.0f;  // a NaN passes the gradient, as torch's relu backward
  } else if constexpr (A == Activation::kSilu) {
    const float s = 1.0f / (1.0f + exp_poly(-v));
    return s * (1.0f + v * (1.0f - s));
  } else {
    const float t = tanh_poly(v);
    return 1.0f - t * t;
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

template <typename T, Activation A, SkipKind S>
void forward_rows(const EpilogueForward& a, int64_t begin, int64_t end) {
  const int64_t cols = a.cols;
  const int64_t per_tile = tile_rows(cols);
  const std::vector<float> bias_tile = repeat_rows(a.bias, cols, per_tile);
  const std::vector<float> gamma_tile =
      S == SkipKind::kScale ? repeat_rows(a.gamma, cols, per_tile) : std::vector<float>();
  const float* bias = bias_tile.data();
  const float* gamma = gamma_tile.data();
  for (int64_t r = begin; r < end; r += per_tile) {
    const int64_t n = (r + per_tile < end ? per_tile : end - r) * cols;
    const T* y = static_cast<const T*>(a.y) + r * cols;
    const T* x = S == SkipKind::kNone ? nullptr : static_cast<const T*>(a.x) + r * cols;
    T* pre = a.pre == nullptr ? nullptr : static_cast<T*>(a.pre) + r * cols;
    T* out = static_cast<T*>(a.out) + r * cols;
    if (pre != nullptr) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        float v = to_float(y[i]) + bias[i];
        if constexpr (S == SkipKind::kIdentity) v += to_float(x[i]);
        if constexpr (S == SkipKind::kScale) v = madd(gamma[i], to_float(x[i]), v);
        const T stored = from_float<T>(v);
        pre[i] = stored;
        out[i] = from_float<T>(activate<A>(to_float(stored)));
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        float v = to_float(y[i]) + bias[i];
        if constexpr (S == SkipKind::kIdentity) v += to_float(x[i]);
        if constexpr (S == SkipKind::kScale) v = madd(gamma[i], to_float(x[i]), v);
        out[i] = from_float<T>(activate<A>(v));
      }
    }
  }
}

template <typename T, Activation A, SkipKind S>
void run_forward(const EpilogueForward& a, int num_threads) {
  const int threads = threads_for(a.rows * a.cols, num_threads);
#pragma omp parallel num_threads(threads)
  {
    const int n = omp_get_num_threads();
    const int id = omp_get_thread_num();
    forward_rows<T, A, S>(a, a.rows * id / n, a.rows * (id + 1) / n);
  }
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

// The backward loop over one tile of `n` elements. What it writes is fixed at compile time
// (a run-time test inside the loop keeps it from vectorising well: 10x slower in bfloat16).
template <typename T, Activation A, SkipKind S, bool WritePre, bool WriteX, bool Accumulate>
inline void backward_tile(int64_t n, const T* g_out, const T* pre, T* g_pre, const T* x,
                          const float* gamma, T* g_x, float* bb, float* bg) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float d = to_float(g_out[i]);
    if constexpr (A != Activation::kNone) d *= activate_grad<A>(to_float(pre[i]));
    const T stored = from_float<T>(d);
    if constexpr (WritePre) g_pre[i] = stored;
    // Sums and the skip gradient use the value as stored, as a chain of separate ops would.
    const float ds = to_float(stored);
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
template <typename T, Activation A, SkipKind S, bool WritePre, bool WriteX, bool Accumulate>
void backward_rows(const EpilogueBackward& a, int64_t begin, int64_t end, double* bias_sum,
                   double* gamma_sum) {
  const int64_t cols = a.cols;
  const int64_t per_tile = tile_rows(cols);
  const std::vector<float> gamma_tile =
      S == SkipKind::kScale ? repeat_rows(a.gamma, cols, per_tile) : std::vector<float>();
  std::vector<float> tile_bias(static_cast<size_t>(cols * per_tile), 0.0f);
  std::vector<float> tile_gamma(static_cast<size_t>(cols * per_tile), 0.0f);
  int64_t tiles = 0;
  for (int64_t r = begin; r < end; r += per_tile) {
    const int64_t n = (r + per_tile < end ? per_tile : end - r) * cols;
    const int64_t at = r * cols;
    backward_tile<T, A, S, WritePre, WriteX, Accumulate>(
        n, static_cast<const T*>(a.grad_out) + at,
        A == Activation::kNone ? nullptr : static_cast<const T*>(a.pre) + at,
        WritePre ? static_cast<T*>(a.grad_pre) + at : nullptr,
        S == SkipKind::kScale ? static_cast<const T*>(a.x) + at : nullptr, gamma_tile.data(),
        WriteX ? static_cast<T*>(a.grad_x) + at : nullptr, tile_bias.data(), tile_gamma.data());
    if (++tiles % kFlushTiles == 0 || r + per_tile >= end) {
      flush_sums(tile_bias.data(), per_tile, cols, bias_sum);
      if constexpr (S == SkipKind::kScale) flush_sums(tile_gamma.data(), per_tile, cols, gamma_sum);
    }
  }
}

// backward_rows with what it writes chosen from the arguments.
template <typename T, Activation A, SkipKind S>
void backward_rows_for(const EpilogueBackward& a, int64_t begin, int64_t end, double* bias_sum,
                       double* gamma_sum) {
  const bool pre = a.grad_pre != nullptr;
  const bool x = S != SkipKind::kNone && a.grad_x != nullptr;
  if (x && a.accumulate_x) {
    if (pre) return backward_rows<T, A, S, true, true, true>(a, begin, end, bias_sum, gamma_sum);
    return backward_rows<T, A, S, false, true, true>(a, begin, end, bias_sum, gamma_sum);
  }
  if (x) {
    if (pre) return backward_rows<T, A, S, true, true, false>(a, begin, end, bias_sum, gamma_sum);
    return backward_rows<T, A, S, false, true, false>(a, begin, end, bias_sum, gamma_sum);
  }
  if (pre) return backward_rows<T, A, S, true, false, false>(a, begin, end, bias_sum, gamma_sum);
  backward_rows<T, A, S, false, false, false>(a, begin, end, bias_sum, gamma_sum);
}

template <typename T, Activation A, SkipKind S>
void run_backward(const EpilogueBackward& a, int num_threads) {
  const int threads = threads_for(a.rows * a.cols, num_threads);
  const int64_t cols = a.cols;
  // Per-thread sums, added in thread order below so that a run is deterministic.
  std::vector<double> sums(static_cast<size_t>(2 * cols * threads), 0.0);
  int used = 1;
#pragma omp parallel num_threads(threads)
  {
    const int n = omp_get_num_threads();
    const int id = omp_get_thread_num();
#pragma omp single
    used = n;
    double* mine = sums.data() + 2 * cols * id;
    backward_rows_for<T, A, S>(a, a.rows * id / n, a.rows * (id + 1) / n, mine, mine + cols);
  }
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

// Dispatch on the run-time storage, activation and skip kind to an instantiated loop.
template <template <typename, Activation, SkipKind> class Loop, typename Args>
void dispatch(const Args& a, int num_threads) {
  auto by_skip = [&](auto storage_tag, auto act_tag) {
    using T = decltype(storage_tag);
    constexpr Activation A = decltype(act_tag)::value;
    switch (a.skip) {
      case SkipKind::kIdentity:
        return Loop<T, A, SkipKind::kIdentity>::run(a, num_threads);
      case SkipKind::kScale:
        return Loop<T, A, SkipKind::kScale>::run(a, num_threads);
      default:
        return Loop<T, A, SkipKind::kNone>::run(a, num_threads);
    }
  };
  auto by_act = [&](auto storage_tag) {
    using Act = Activation;
    switch (a.act) {
      case Act::kGelu:
        return by_skip(storage_tag, std::integral_constant<Act, Act::kGelu>{});
      case Act::kRelu:
        return by_skip(storage_tag, std::integral_constant<Act, Act::kRelu>{});
      case Act::kSilu:
        return by_skip(storage_tag, std::integral_constant<Act, Act::kSilu>{});
      case Act::kTanh:
        return by_skip(storage_tag, std::integral_constant<Act, Act::kTanh>{});
      default:
        return by_skip(storage_tag, std::integral_constant<Act, Act::kNone>{});
    }
  };
  if (a.storage == Storage::kBFloat16) {
    by_act(bf16{});
  } else {
    by_act(float{});
  }
}

template <typename T, Activation A, SkipKind S>
struct ForwardLoop {
  static void run(const EpilogueForward& a, int num_threads) { run_forward<T, A, S>(a, num_threads); }
};

template <typename T, Activation A, SkipKind S>
struct BackwardLoop {
  static void run(const EpilogueBackward& a, int num_threads) {
    run_backward<T, A, S>(a, num_threads);
  }
};

}  // namespace
}  // namespace nol_fast

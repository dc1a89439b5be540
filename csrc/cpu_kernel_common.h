// Scalar helpers of the CPU kernels that are compiled twice, portable and for AVX-512
// (pointwise_epilogue_kernel.h, row_reduction_kernel.h, mode_mixing_kernel.h, ...): bfloat16 storage conversions, a
// multiply-add that is fused where the translation unit targets FMA, and the run-time check
// that picks the AVX-512 loops.
//
// The helpers live in an anonymous namespace, so each translation unit compiles its own copy
// for its own target. A translation unit that targets FMA defines NOL_FAST_KERNEL_FMA before it
// includes this header.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace nol_fast {

// Whether this CPU has the AVX-512 subsets that kernels_avx512.cpp targets.
inline bool cpu_has_avx512() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}

namespace {

using bf16 = uint16_t;

// v rounded up to a multiple of `to`: sizes padded to whole blocks of a kernel.
inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

inline float madd_plain(float a, float b, float c) { return a * b + c; }

// a * b + c in float or double, fused where the translation unit targets FMA (the AVX-512
// ones): polynomials and dot products then take half the instructions.
template <typename A>
inline A madd(A a, A b, A c) {
#ifdef NOL_FAST_KERNEL_FMA
  if constexpr (std::is_same_v<A, double>) {
    return __builtin_fma(a, b, c);
  } else {
    return __builtin_fmaf(a, b, c);
  }
#else
  return a * b + c;
#endif
}

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

}  // namespace
}  // namespace nol_fast

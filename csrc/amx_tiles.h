// bfloat16 block products on AMX tiles (Intel's Advanced Matrix Extensions), for the kernels of
// kernels_amx.cpp, the only translation unit that includes this header (it targets AMX).
//
// One instruction, TDPBF16PS, adds to a 16 x 16 float32 tile C the product of a 16 x 32
// bfloat16 tile A and a 32 x 16 bfloat16 tile B: 8192 multiply-adds, as many as 512 AVX-512
// FMAs. Its operands have fixed layouts:
// - A: 16 rows of 32 bfloat16 (64 bytes), each row one row of the left operand over 32 steps of
//   the reduction;
// - B: "pairs" layout, 16 rows of 16 pairs: row p holds, for each of the 16 columns, the
//   elements of reduction steps 2p and 2p + 1 next to each other.
// Products of bfloat16 values are exact in float32, and the sums are float32, so a result is
// the exact product rounded by float32 sums, in an order that differs from the FMA loops'.
//
// The helpers here move data into those layouts (pack_rows, pack_pairs, pack_transposed) and
// multiply packed tiles into float32 results, up to 2 x 2 C tiles at a time over a run of
// reduction steps (tile_product). A thread configures its tiles on entry and releases them when
// done (TileScope).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "cpu_kernel_common.h"

namespace nol_fast {
namespace {

constexpr int64_t kAmxRows = 16;    // rows of every tile
constexpr int64_t kAmxDepth = 32;   // bfloat16 steps of the reduction per A or B tile
constexpr int64_t kAmxTile = 512;   // bfloat16 elements of a packed A or B tile (1 KiB)

// The 64-byte tile configuration of palette 1.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// A thread's use of the tiles, configured on entry and released (back to their initial state,
// which keeps context switches cheap) on exit. Every tile is 16 rows of 64 bytes, except that a
// product whose reduction is `depth` < 32 deep (and even) has A tiles (4, 5) of 16 rows of
// `depth` values and B tiles (6, 7) of depth / 2 rows: their loads then read no further than
// the operands' columns.
class TileScope {
 public:
  explicit TileScope(int64_t depth = kAmxDepth) {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
      config.bytes_per_row[t] = 64;
      config.rows[t] = kAmxRows;
    }
    for (int t : {4, 5}) config.bytes_per_row[t] = static_cast<uint16_t>(2 * depth);
    for (int t : {6, 7}) config.rows[t] = static_cast<uint8_t>(depth / 2);
    // Not _tile_loadconfig: GCC 12's declares it reads 8 bytes of the configuration, and the
    // compiler may then drop the stores to the rest (it did: every tile unconfigured).
    asm volatile("ldtilecfg %0" : : "m"(config));
  }
  ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// 16 bfloat16 of row r, columns [c0, c0 + 16) of a (rows, cols) matrix with row stride ld;
// zeros past the last column and for r >= rows. A float32 matrix is rounded to bfloat16
// (nearest even; values below float32's normal range become zero).
inline __mmask16 first16(int64_t width) {
  if (width <= 0) return 0;
  return width >= 16 ? 0xffff : static_cast<__mmask16>((1u << width) - 1);
}

inline __m256i load_row16(const bf16* x, int64_t ld, int64_t r, int64_t rows, int64_t c0,
                          int64_t cols) {
  if (r >= rows) return _mm256_setzero_si256();
  return _mm256_maskz_loadu_epi16(first16(cols - c0), x + r * ld + c0);
}

inline __m256i load_row16(const float* x, int64_t ld, int64_t r, int64_t rows, int64_t c0,
                          int64_t cols) {
  if (r >= rows) return _mm256_setzero_si256();
  return reinterpret_cast<__m256i>(
      _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(first16(cols - c0), x + r * ld + c0)));
}

// Two rows of 16 as 16 pairs: 32-bit element i is (even[i], odd[i]).
inline __m512i interleave(__m256i even, __m256i odd) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
  return _mm512_permutexvar_epi16(
      order, _mm512_inserti64x4(_mm512_zextsi256_si512(even), odd, 1));
}

// Transposes a 16 x 16 matrix of 32-bit elements held one row per register.
inline void transpose_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8) {
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

// Rows [r0, r0 + count) of the (., cols) matrix x (row stride ld) as A tiles: the tile of row
// block i (16 rows) and step s (32 columns) at out + (i * steps + s) * kAmxTile, zeros past
// the last column. Rows past `count` keep what they held. A float32 matrix is rounded to
// bfloat16 (nearest even).
inline __m512i load_row32(const bf16* row, int64_t width) {
  const __mmask32 mask = width >= 32 ? ~0u : static_cast<__mmask32>((1u << width) - 1);
  return _mm512_maskz_loadu_epi16(mask, row);
}

inline __m512i load_row32(const float* row, int64_t width) {
  const __m512 low = _mm512_maskz_loadu_ps(first16(width), row);
  const __m512 high = _mm512_maskz_loadu_ps(first16(width - 16), row + 16);
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));
}

template <typename S>
inline void pack_rows(const S* x, int64_t ld, int64_t r0, int64_t count, int64_t cols,
                      int64_t steps, bf16* out) {
  for (int64_t r = 0; r < count; ++r) {
    const S* row = x + (r0 + r) * ld;
    bf16* dst = out + (r / kAmxRows) * steps * kAmxTile + (r % kAmxRows) * kAmxDepth;
    for (int64_t s = 0; s < steps; ++s) {
      _mm512_storeu_si512(dst + s * kAmxTile,
                          load_row32(row + s * kAmxDepth, cols - s * kAmxDepth));
    }
  }
}

// Rows [t0, t0 + 32 * steps) of the (rows, cols) matrix x as B tiles: the tile of column block
// b and step s at out + (b * steps + s) * kAmxTile. Rows past `rows` are zeros.
template <typename S>
inline void pack_pairs(const S* x, int64_t ld, int64_t t0, int64_t rows, int64_t cols,
                       int64_t steps, bf16* out) {
  for (int64_t c0 = 0, block = 0; c0 < cols; c0 += 16, ++block) {
    for (int64_t s = 0; s < steps; ++s) {
      bf16* tile = out + (block * steps + s) * kAmxTile;
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t r = t0 + s * kAmxDepth + 2 * p;
        _mm512_storeu_si512(tile + 32 * p, interleave(load_row16(x, ld, r, rows, c0, cols),
                                                      load_row16(x, ld, r + 1, rows, c0, cols)));
      }
    }
  }
}

// The (rows, cols) float32 matrix w(i, j) = w[i * stride_row + j * stride_col] (a weight or its
// transpose, read through strides) rounded to bfloat16 as torch rounds it (autocast's cast of a
// weight), as B tiles: its rows are the reduction, 32 per step.
inline std::vector<bf16> weight_tiles(const float* w, int64_t rows, int64_t cols,
                                      int64_t stride_row, int64_t stride_col) {
  std::vector<bf16> rounded(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      rounded[i * cols + j] = from_float<bf16>(w[i * stride_row + j * stride_col]);
    }
  }
  const int64_t steps = round_up(rows, kAmxDepth) / kAmxDepth;
  std::vector<bf16> tiles(static_cast<size_t>(round_up(cols, 16) / 16 * steps * kAmxTile));
  pack_pairs(rounded.data(), cols, 0, rows, cols, steps, tiles.data());
  return tiles;
}

// The same rows of x transposed, as A tiles: row i of the tile of column block b and step s is
// column 16 b + i over the step's 32 rows. (The pairs of a step, transposed as 32-bit units.)
template <typename S>
inline void pack_transposed(const S* x, int64_t ld, int64_t t0, int64_t rows, int64_t cols,
                            int64_t steps, bf16* out) {
  for (int64_t c0 = 0, block = 0; c0 < cols; c0 += 16, ++block) {
    for (int64_t s = 0; s < steps; ++s) {
      __m512i v[16];
      for (int64_t p = 0; p < 16; ++p) {
        const int64_t r = t0 + s * kAmxDepth + 2 * p;
        v[p] = interleave(load_row16(x, ld, r, rows, c0, cols),
                          load_row16(x, ld, r + 1, rows, c0, cols));
      }
      transpose_16x16(v);
      bf16* tile = out + (block * steps + s) * kAmxTile;
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(tile + 32 * i, v[i]);
    }
  }
}

// Where the A tiles of a product lie: tile (block i, step s) at base + i * block + s * step,
// its 16 rows `stride` bytes apart. Tiles packed as above (packed_tiles), or a bfloat16 matrix
// read in place (matrix_tiles): its rows of 16 at a time, its columns 32 at a time, which
// needs whole blocks of rows and a multiple of 32 columns, or fewer (and an even number) read
// whole with the TileScope of that depth.
struct ATiles {
  const bf16* base;
  int64_t stride;
  int64_t step;
  int64_t block;
};

inline ATiles packed_tiles(const bf16* tiles, int64_t steps) {
  return {tiles, 64, kAmxTile, steps * kAmxTile};
}

inline ATiles matrix_tiles(const bf16* rows, int64_t ld) {
  return {rows, ld * static_cast<int64_t>(sizeof(bf16)), kAmxDepth, kAmxRows * ld};
}

// c (MB x NB tiles of 16 x 16 float32, row stride ldc floats) = (ADD: c +) the sum over
// `steps` of A(i, step) B(j, step), i < MB, j < NB, B packed as above: the tile of block j and
// step s at b + (j * steps + s) * kAmxTile. Tiles 0-3 hold C, 4-5 A and 6-7 B.
template <int MB, int NB, bool ADD>
inline void block_product(const ATiles& a, const bf16* b, int64_t steps, float* c, int64_t ldc) {
  const int64_t c_stride = ldc * static_cast<int64_t>(sizeof(float));
  const int64_t next = steps * kAmxTile;
  float* c10 = c + kAmxRows * ldc;
  if constexpr (ADD) {
    _tile_loadd(0, c, c_stride);
    if constexpr (NB > 1) _tile_loadd(1, c + 16, c_stride);
    if constexpr (MB > 1) _tile_loadd(2, c10, c_stride);
    if constexpr (MB > 1 && NB > 1) _tile_loadd(3, c10 + 16, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (NB > 1) _tile_zero(1);
    if constexpr (MB > 1) _tile_zero(2);
    if constexpr (MB > 1 && NB > 1) _tile_zero(3);
  }
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a.base + s * a.step, a.stride);
    _tile_loadd(6, b + s * kAmxTile, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB > 1) {
      _tile_loadd(7, b + next + s * kAmxTile, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (MB > 1) {
      _tile_loadd(5, a.base + a.block + s * a.step, a.stride);
      _tile_dpbf16ps(2, 5, 6);
    }
    if constexpr (MB > 1 && NB > 1) _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, c_stride);
  if constexpr (NB > 1) _tile_stored(1, c + 16, c_stride);
  if constexpr (MB > 1) _tile_stored(2, c10, c_stride);
  if constexpr (MB > 1 && NB > 1) _tile_stored(3, c10 + 16, c_stride);
}

// c (16 * row_blocks x 16 * col_blocks float32, row stride ldc) = (ADD: c +) A B over
// `steps`, in groups of 2 x 2 tiles where the blocks allow.
template <bool ADD>
inline void tile_product(const ATiles& a, int64_t row_blocks, const bf16* b, int64_t col_blocks,
                         int64_t steps, float* c, int64_t ldc) {
  const int64_t next = steps * kAmxTile;
  for (int64_t i = 0; i < row_blocks; i += 2) {
    for (int64_t j = 0; j < col_blocks; j += 2) {
      const ATiles ai{a.base + i * a.block, a.stride, a.step, a.block};
      const bf16* bj = b + j * next;
      float* cij = c + i * kAmxRows * ldc + j * 16;
      const bool two_rows = i + 1 < row_blocks, two_cols = j + 1 < col_blocks;
      if (two_rows && two_cols) {
        block_product<2, 2, ADD>(ai, bj, steps, cij, ldc);
      } else if (two_rows) {
        block_product<2, 1, ADD>(ai, bj, steps, cij, ldc);
      } else if (two_cols) {
        block_product<1, 2, ADD>(ai, bj, steps, cij, ldc);
      } else {
        block_product<1, 1, ADD>(ai, bj, steps, cij, ldc);
      }
    }
  }
}

}  // namespace
}  // namespace nol_fast

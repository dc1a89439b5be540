// The weight gradient of a channels-last pointwise layer: out = a^T b for two (rows, m) and
// (rows, n) matrices with many rows (every grid point of every sample) and few columns (the
// layer's channels), in float32 whatever the storage.
//
// As a GEMM this is the worst shape there is for a BLAS: the reduction is the long side and the
// result is tiny, so the library's parallel split (over the result's tiles) leaves one thread
// busy, and for bfloat16 operands there is no way to ask torch for a float32 result of a
// bfloat16 product on the CPU. Here the rows are split among the threads, each converts tiles of
// rows to float32 in cache and accumulates them into its own float32 result in registers, and
// the threads' results are added in a fixed order.
#pragma once

#include <cstdint>

#include "pointwise_epilogue.h"

namespace nol_fast {

struct RowReduction {
  int64_t rows;
  int64_t m;    // columns of a: rows of the result
  int64_t n;    // columns of b: columns of the result
  const void* a;
  int64_t lda;  // elements between rows of a (at least m)
  const void* b;
  int64_t ldb;  // elements between rows of b (at least n)
  float* out;   // (m, n), contiguous, overwritten
  Storage storage;  // of a and b
};

void reduce_rows(const RowReduction& args, int num_threads);

}  // namespace nol_fast

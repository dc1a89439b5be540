// The row reduction's loops (row_reduction_kernel.h) compiled for AVX-512 with FMA.
// row_reduction.cpp calls them only after checking at run time that the CPU has these features.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "row_reduction.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
#define NOL_FAST_KERNEL_FMA 1
#include "row_reduction_kernel.h"

namespace nol_fast {
namespace detail {

void reduce_rows_avx512(const RowReduction& args, int num_threads) {
  dispatch_reduction(args, num_threads);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC pop_options
#endif

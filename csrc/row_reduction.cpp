// The row reduction of weight gradients (see row_reduction.h): the portable loops, and the
// choice of the AVX-512 ones on CPUs that have it.
#include "row_reduction.h"

#include "cpu_kernel_common.h"
#include "row_reduction_kernel.h"

namespace nol_fast {

void reduce_rows(const RowReduction& args, int num_threads) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu_has_avx512()) return detail::reduce_rows_avx512(args, num_threads);
#endif
  dispatch_reduction(args, num_threads);
}

}  // namespace nol_fast

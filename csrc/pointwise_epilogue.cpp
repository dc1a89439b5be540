// Fused epilogues of the channels-last FNO layers (see pointwise_epilogue.h): the portable
// loops, and the choice of the AVX-512 ones on CPUs that have it.
#include "pointwise_epilogue.h"

#include "cpu_kernel_common.h"
#include "pointwise_epilogue_kernel.h"

namespace nol_fast {

void epilogue_forward(const EpilogueForward& args, int num_threads) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu_has_avx512()) return detail::epilogue_forward_avx512(args, num_threads);
#endif
  dispatch_forward(args, num_threads);
}

void epilogue_backward(const EpilogueBackward& args, int num_threads) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu_has_avx512()) return detail::epilogue_backward_avx512(args, num_threads);
#endif
  dispatch_backward(args, num_threads);
}

}  // namespace nol_fast

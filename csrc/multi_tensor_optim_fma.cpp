// The CPU multi-tensor step compiled for AVX2 with fused multiply-adds, the rounding torch's
// own CPU kernels use on such machines. multi_tensor_optim.cpp calls it only after checking
// at run time that the CPU has both features.
#include <cmath>
#include <cstdint>
#include <vector>

#include "multi_tensor_optim.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "multi_tensor_optim_kernel.h"

namespace nol_fast {
namespace detail {

void update_chunk_fused(const StepArgs<float>& args, int64_t c) {
  update_chunk<float, true>(args, c);
}

void update_chunk_fused(const StepArgs<double>& args, int64_t c) {
  update_chunk<double, true>(args, c);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC pop_options
#endif

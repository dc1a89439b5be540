// The fused epilogue loops (pointwise_epilogue_kernel.h) compiled for AVX-512: sixteen float32
// lanes and masked tails. pointwise_epilogue.cpp calls them only after checking at run time
// that the CPU has these features.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "pointwise_epilogue.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
#define NOL_FAST_KERNEL_FMA 1
#include "pointwise_epilogue_kernel.h"

namespace nol_fast {
namespace detail {

void epilogue_forward_avx512(const EpilogueForward& args, int num_threads) {
  dispatch_forward(args, num_threads);
}

void epilogue_backward_avx512(const EpilogueBackward& args, int num_threads) {
  dispatch_backward(args, num_threads);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC pop_options
#endif

// The CPU kernels' loops compiled for AVX-512 with FMA: the fused epilogues
// (pointwise_epilogue_kernel.h), the row reduction (row_reduction_kernel.h), the fused channel
// MLP (channel_mlp_kernel.h) and the spectral channel mixing (mode_mixing_kernel.h). cpu_kernels.cpp calls these only after checking at run time that
// the CPU has these features (cpu_has_avx512).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels_avx512.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
#define NOL_FAST_KERNEL_FMA 1
#include "channel_mlp_kernel.h"
#include "mode_mixing_kernel.h"
#include "pointwise_epilogue_kernel.h"
#include "row_reduction_kernel.h"

namespace nol_fast {
namespace detail {

void epilogue_forward_avx512(const EpilogueForward& args, int num_threads) {
  dispatch_forward(args, num_threads);
}

void epilogue_backward_avx512(const EpilogueBackward& args, int num_threads) {
  dispatch_backward(args, num_threads);
}

void reduce_rows_avx512(const RowReduction& args, int num_threads) {
  dispatch_reduction(args, num_threads);
}

void channel_mlp_forward_avx512(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_forward<FmaProducts>(args, num_threads);
}

void channel_mlp_backward_avx512(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_backward<FmaProducts>(args, num_threads);
}

void mode_mixing_forward_avx512(const ModeMixing& args, int num_threads) {
  dispatch_mixing_forward(args, num_threads);
}

void mode_mixing_backward_avx512(const ModeMixing& args, int num_threads) {
  dispatch_mixing_backward(args, num_threads);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC pop_options
#endif

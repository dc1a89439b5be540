// The fused channel MLP's loops (channel_mlp_kernel.h) compiled for AVX-512 with FMA.
// channel_mlp.cpp calls them only after checking at run time that the CPU has these features.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "channel_mlp.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")
#define NOL_FAST_KERNEL_FMA 1
#include "channel_mlp_kernel.h"

namespace nol_fast {
namespace detail {

void channel_mlp_forward_avx512(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_forward(args, num_threads);
}

void channel_mlp_backward_avx512(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_backward(args, num_threads);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC pop_options
#endif

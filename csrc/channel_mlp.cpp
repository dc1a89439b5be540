// The fused channel MLP (see channel_mlp.h): the portable loops, and the choice of the AVX-512
// ones on CPUs that have it.
#include "channel_mlp.h"

#include "channel_mlp_kernel.h"
#include "cpu_kernel_common.h"

namespace nol_fast {

void channel_mlp_forward(const ChannelMlp& args, int num_threads) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu_has_avx512()) return detail::channel_mlp_forward_avx512(args, num_threads);
#endif
  dispatch_mlp_forward(args, num_threads);
}

void channel_mlp_backward(const ChannelMlp& args, int num_threads) {
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu_has_avx512()) return detail::channel_mlp_backward_avx512(args, num_threads);
#endif
  dispatch_mlp_backward(args, num_threads);
}

}  // namespace nol_fast

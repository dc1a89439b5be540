// The CPU kernels' entry points: the portable loops of the fused epilogues
// (pointwise_epilogue_kernel.h), the row reduction (row_reduction_kernel.h), the fused
// channel MLP (channel_mlp_kernel.h) and the spectral channel mixing (mode_mixing_kernel.h), or
// their AVX-512 builds (kernels_avx512.cpp) on CPUs that have it.
#include "channel_mlp.h"
#include "channel_mlp_kernel.h"
#include "cpu_kernel_common.h"
#include "kernels_amx.h"
#include "kernels_avx512.h"
#include "mode_mixing.h"
#include "mode_mixing_kernel.h"
#include "pointwise_epilogue.h"
#include "pointwise_epilogue_kernel.h"
#include "row_reduction.h"
#include "row_reduction_kernel.h"

// Returns from the enclosing entry point with the AVX-512 build of `call` where the CPU has it.
#if defined(__GNUC__) && defined(__x86_64__)
#define NOL_FAST_USE_AVX512(call) \
  if (cpu_has_avx512()) return detail::call
#else
#define NOL_FAST_USE_AVX512(call)
#endif

// Returns from the enclosing entry point with the AMX build of `call` for bfloat16 storage where
// AMX is enabled (kernels_amx.h).
#define NOL_FAST_USE_AMX(call) \
  if (args.storage == Storage::kBFloat16 && amx_enabled()) return detail::call

namespace nol_fast {

void epilogue_forward(const EpilogueForward& args, int num_threads) {
  NOL_FAST_USE_AVX512(epilogue_forward_avx512(args, num_threads));
  dispatch_forward(args, num_threads);
}

void epilogue_backward(const EpilogueBackward& args, int num_threads) {
  NOL_FAST_USE_AVX512(epilogue_backward_avx512(args, num_threads));
  dispatch_backward(args, num_threads);
}

void reduce_rows(const RowReduction& args, int num_threads) {
  NOL_FAST_USE_AMX(reduce_rows_amx(args, num_threads));
  NOL_FAST_USE_AVX512(reduce_rows_avx512(args, num_threads));
  dispatch_reduction(args, num_threads);
}

void channel_mlp_forward(const ChannelMlp& args, int num_threads) {
  NOL_FAST_USE_AMX(channel_mlp_forward_amx(args, num_threads));
  NOL_FAST_USE_AVX512(channel_mlp_forward_avx512(args, num_threads));
  dispatch_mlp_forward<FmaProducts>(args, num_threads);
}

void channel_mlp_backward(const ChannelMlp& args, int num_threads) {
  NOL_FAST_USE_AMX(channel_mlp_backward_amx(args, num_threads));
  NOL_FAST_USE_AVX512(channel_mlp_backward_avx512(args, num_threads));
  dispatch_mlp_backward<FmaProducts>(args, num_threads);
}

void mode_mixing_forward(const ModeMixing& args, int num_threads) {
  NOL_FAST_USE_AVX512(mode_mixing_forward_avx512(args, num_threads));
  dispatch_mixing_forward(args, num_threads);
}

void mode_mixing_backward(const ModeMixing& args, int num_threads) {
  NOL_FAST_USE_AVX512(mode_mixing_backward_avx512(args, num_threads));
  dispatch_mixing_backward(args, num_threads);
}

}  // namespace nol_fast

// The CPU kernels' loops compiled for AVX-512 (kernels_avx512.cpp). cpu_kernels.cpp calls them
// only on CPUs that have it (cpu_has_avx512); they are defined only where GCC targets x86-64.
#pragma once

#include "channel_mlp.h"
#include "mode_mixing.h"
#include "pointwise_epilogue.h"
#include "row_reduction.h"

namespace nol_fast {
namespace detail {

void epilogue_forward_avx512(const EpilogueForward& args, int num_threads);
void epilogue_backward_avx512(const EpilogueBackward& args, int num_threads);
void reduce_rows_avx512(const RowReduction& args, int num_threads);
void channel_mlp_forward_avx512(const ChannelMlp& args, int num_threads);
void channel_mlp_backward_avx512(const ChannelMlp& args, int num_threads);
void mode_mixing_forward_avx512(const ModeMixing& args, int num_threads);
void mode_mixing_backward_avx512(const ModeMixing& args, int num_threads);

}  // namespace detail
}  // namespace nol_fast

// The bfloat16 kernels that run their products on AMX tiles (kernels_amx.cpp), and whether this
// process may use them. cpu_kernels.cpp calls them for bfloat16 storage when amx_enabled().
#pragma once

#include "row_reduction.h"

namespace nol_fast {

// Whether the CPU has AMX with bfloat16 (amx-tile, amx-bf16, and the AVX-512 subsets the packing
// uses) and the kernel lets this process use the tile registers (Linux asks each process to
// request them once: arch_prctl(ARCH_REQ_XCOMP_PERM)). Checked once.
bool amx_available();
// Whether the AMX kernels run where they can: amx_available(), unless turned off with
// set_amx_enabled(false) (the FMA kernels then run, as on CPUs without AMX).
bool amx_enabled();
// Turns the AMX kernels on or off for the process; returns the previous setting.
bool set_amx_enabled(bool enabled);

namespace detail {

void reduce_rows_amx(const RowReduction& args, int num_threads);

}  // namespace detail
}  // namespace nol_fast

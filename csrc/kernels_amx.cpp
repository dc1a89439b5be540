// The bfloat16 kernels whose products run on AMX tiles (amx_tiles.h): the row reduction. They
// are compiled for AMX and AVX-512 here and called only where amx_enabled() (kernels_amx.h).
#include "kernels_amx.h"

#include <atomic>

// AMX intrinsics need GCC 11 or clang 12; older compilers build the extension without them.
#if defined(__x86_64__) && defined(__linux__) &&                     \
    ((defined(__clang__) && __clang_major__ >= 12) ||                \
     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <cpuid.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,amx-tile,amx-bf16,fma")
#define NOL_FAST_KERNEL_FMA 1
// GCC 12's AVX-512 intrinsics start "undefined" vectors as copies of themselves, which -Wall
// reports as maybe uninitialized wherever the unpacks and inserts of amx_tiles.h inline.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "amx_tiles.h"
#include "row_reduction_kernel.h"

namespace nol_fast {
namespace {

// Rows of each operand a thread packs at a time: 16 steps of the reduction, 16 KiB per 16
// columns of both operands.
constexpr int64_t kAmxChunkRows = 512;

// total (m_pad x n_pad) += a[begin:end]^T b[begin:end]: a's columns as A tiles, b's as B.
void reduce_range_amx(const RowReduction& args, int64_t begin, int64_t end, int64_t m_pad,
                      int64_t n_pad, float* total) {
  const int64_t row_blocks = m_pad / kAmxRows, col_blocks = n_pad / 16;
  const int64_t max_steps = kAmxChunkRows / kAmxDepth;
  std::vector<bf16> a_tiles(static_cast<size_t>(row_blocks * max_steps * kAmxTile));
  std::vector<bf16> b_tiles(static_cast<size_t>(col_blocks * max_steps * kAmxTile));
  const TileScope tiles;
  for (int64_t start = begin; start < end; start += kAmxChunkRows) {
    const int64_t steps = (std::min(kAmxChunkRows, end - start) + kAmxDepth - 1) / kAmxDepth;
    pack_transposed(static_cast<const bf16*>(args.a), args.lda, start, end, args.m, steps,
                    a_tiles.data());
    pack_pairs(static_cast<const bf16*>(args.b), args.ldb, start, end, args.n, steps,
               b_tiles.data());
    tile_product(a_tiles.data(), row_blocks, b_tiles.data(), col_blocks, steps, total, n_pad);
  }
}

}  // namespace

bool amx_available() {
  static const bool available = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tile = (edx >> 24) & 1u, bf16_tiles = (edx >> 22) & 1u;
    if (!tile || !bf16_tiles || !cpu_has_avx512()) return false;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) || !((eax >> 5) & 1u)) {
      return false;  // no AVX512_BF16
    }
    constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return available;
}

namespace detail {

void reduce_rows_amx(const RowReduction& args, int num_threads) {
  const int64_t m_pad = round_up(args.m, kAmxRows), n_pad = round_up(args.n, 16);
  const int64_t inputs = args.rows * (args.m + args.n);
  const int threads = inputs >= kParallelMinInputs && num_threads > 1 ? num_threads : 1;
  std::vector<float> partial(static_cast<size_t>(threads * m_pad * n_pad), 0.0f);
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    reduce_range_amx(args, args.rows * id / n, args.rows * (id + 1) / n, m_pad, n_pad,
                     partial.data() + id * m_pad * n_pad);
  }
  add_partials(partial.data(), threads, m_pad, n_pad, args);
}

}  // namespace detail
}  // namespace nol_fast
#pragma GCC diagnostic pop
#pragma GCC pop_options

#else  // no AMX kernels off x86-64 Linux or with older compilers

namespace nol_fast {
bool amx_available() { return false; }
namespace detail {
void reduce_rows_amx(const RowReduction&, int) {}
}  // namespace detail
}  // namespace nol_fast

#endif

namespace nol_fast {
namespace {
std::atomic<bool> amx_switch{true};
}  // namespace

bool amx_enabled() { return amx_switch.load(std::memory_order_relaxed) && amx_available(); }

bool set_amx_enabled(bool enabled) { return amx_switch.exchange(enabled); }

}  // namespace nol_fast

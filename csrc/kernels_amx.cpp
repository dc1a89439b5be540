// The bfloat16 kernels whose products run on AMX tiles (amx_tiles.h): the row reduction, the
// row product, the shared-matrix product and the channel MLP's products (channel_mlp_amx.h).
// They are compiled for AMX and AVX-512 here and called only where amx_enabled()
// (kernels_amx.h).
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
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,amx-tile,amx-bf16,fma," \
                   "prefer-vector-width=512")
#define NOL_FAST_KERNEL_FMA 1
// GCC 12's AVX-512 intrinsics start "undefined" vectors as copies of themselves, which -Wall
// reports as maybe uninitialized wherever the unpacks and inserts of amx_tiles.h inline.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "amx_tiles.h"
#include "channel_mlp_amx.h"
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
    tile_product<true>(packed_tiles(a_tiles.data(), steps), row_blocks, b_tiles.data(),
                       col_blocks, steps, total, n_pad);
  }
}

// Rows [0, rows) of c (float32, row stride ldc), columns [0, cols), rounded to bfloat16 into
// out (row stride ldo), each first added to out's value when `accumulate`.
void store_rounded(const float* c, int64_t ldc, int64_t rows, int64_t cols, bool accumulate,
                   bf16* out, int64_t ldo) {
  if (ldc == cols && ldo == cols) {  // both contiguous: one run of rows * cols values
    cols *= rows;
    rows = 1;
  }
  for (int64_t r = 0; r < rows; ++r) {
    bf16* row = out + r * ldo;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 mask = first16(cols - j);
      __m512 v = _mm512_maskz_loadu_ps(mask, c + r * ldc + j);
      if (accumulate) {
        const __m512i old = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row + j));
        v = _mm512_add_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(old, 16)));
      }
      // nearest even, as torch rounds (values below float32's normal range become zero)
      _mm256_mask_storeu_epi16(row + j, mask, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
    }
  }
}

// Rows per block of the row product: two row blocks of tiles.
constexpr int64_t kProductRows = 2 * kAmxRows;

// Rows [begin, end) of the row product, 32 at a time: the rows as A tiles, their product
// with the weight's B tiles in float32, then rounded (after adding out's values) into out.
void matmul_range_amx(const RowsMatmul& args, const bf16* w_tiles, int64_t begin, int64_t end) {
  const int64_t steps = round_up(args.k, kAmxDepth) / kAmxDepth;
  const int64_t n_pad = round_up(args.n, 16);
  std::vector<bf16> a_tiles(static_cast<size_t>(2 * steps * kAmxTile), 0);
  std::vector<float> c(static_cast<size_t>(kProductRows * n_pad));
  const bf16* a = static_cast<const bf16*>(args.a);
  bf16* out = static_cast<bf16*>(args.out);
  // whole blocks of rows are read in place where they are a multiple of 32 columns wide, or
  // an even number below 32 (with tiles that deep); others are packed
  const bool shallow = args.k < kAmxDepth && args.k % 2 == 0;
  const bool in_place = shallow || args.k % kAmxDepth == 0;
  const TileScope tiles(shallow ? args.k : kAmxDepth);
  for (int64_t start = begin; start < end; start += kProductRows) {
    const int64_t rows = std::min(kProductRows, end - start);
    ATiles tiles_a = matrix_tiles(a + start * args.lda, args.lda);
    if (rows < kProductRows || !in_place) {
      pack_rows(a, args.lda, start, rows, args.k, steps, a_tiles.data());
      tiles_a = packed_tiles(a_tiles.data(), steps);
    }
    tile_product<false>(tiles_a, round_up(rows, kAmxRows) / kAmxRows, w_tiles, n_pad / 16,
                        steps, c.data(), n_pad);
    store_rounded(c.data(), n_pad, rows, args.n, args.accumulate, out + start * args.ldo,
                  args.ldo);
  }
}

// Products [begin, end) of the shared-matrix product: each product's right operand packed as
// B tiles, multiplied by the matrix's A tiles in float32, rounded into its output.
void shared_range_amx(const SharedMatmul& args, const bf16* m_tiles, int64_t begin,
                      int64_t end) {
  const int64_t steps = round_up(args.cols, kAmxDepth) / kAmxDepth;
  const int64_t row_blocks = round_up(args.rows, kAmxRows) / kAmxRows;
  const int64_t rest_pad = round_up(args.rest, 16);
  std::vector<bf16> b_tiles(static_cast<size_t>(rest_pad / 16 * steps * kAmxTile));
  std::vector<float> c(static_cast<size_t>(row_blocks * kAmxRows * rest_pad));
  const bf16* t = static_cast<const bf16*>(args.t);
  bf16* out = static_cast<bf16*>(args.out);
  const TileScope tiles;
  for (int64_t l = begin; l < end; ++l) {
    pack_pairs(t + l * args.cols * args.rest, args.rest, 0, args.cols, args.rest, steps,
               b_tiles.data());
    tile_product<false>(packed_tiles(m_tiles, steps), row_blocks, b_tiles.data(),
                        rest_pad / 16, steps, c.data(), rest_pad);
    store_rounded(c.data(), rest_pad, args.rows, args.rest, args.accumulate,
                  out + l * args.rows * args.rest, args.rest);
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

void channel_mlp_forward_amx(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_forward<AmxProducts>(args, num_threads);
}

void channel_mlp_backward_amx(const ChannelMlp& args, int num_threads) {
  dispatch_mlp_backward<AmxProducts>(args, num_threads);
}

void rows_matmul_amx(const RowsMatmul& args, int num_threads) {
  const std::vector<bf16> w_tiles =
      weight_tiles(args.w, args.k, args.n, args.w_stride_k, args.w_stride_n);
  const int64_t inputs = args.rows * (args.k + args.n);
  const int threads = inputs >= kParallelMinInputs && num_threads > 1 ? num_threads : 1;
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    matmul_range_amx(args, w_tiles.data(), args.rows * id / n, args.rows * (id + 1) / n);
  }
}

void shared_matmul_amx(const SharedMatmul& args, int num_threads) {
  const int64_t steps = round_up(args.cols, kAmxDepth) / kAmxDepth;
  const int64_t row_blocks = round_up(args.rows, kAmxRows) / kAmxRows;
  std::vector<bf16> m_tiles(static_cast<size_t>(row_blocks * steps * kAmxTile), 0);
  const bf16* m = static_cast<const bf16*>(args.matrix);
  for (int64_t r0 = 0; r0 < args.rows; r0 += 2 * kAmxRows) {
    pack_rows(m, args.cols, r0, std::min(2 * kAmxRows, args.rows - r0), args.cols, steps,
              m_tiles.data() + r0 / kAmxRows * steps * kAmxTile);
  }
  const int64_t work = args.lead * args.rest * (args.rows + args.cols);
  const int threads = work >= kParallelMinInputs && num_threads > 1 ? num_threads : 1;
#pragma omp parallel num_threads(threads)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    shared_range_amx(args, m_tiles.data(), args.lead * id / n, args.lead * (id + 1) / n);
  }
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
void rows_matmul_amx(const RowsMatmul&, int) {}
void channel_mlp_forward_amx(const ChannelMlp&, int) {}
void channel_mlp_backward_amx(const ChannelMlp&, int) {}
void shared_matmul_amx(const SharedMatmul&, int) {}
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

// Multi-tensor Adam/AdamW and AdaBound steps on the CPU (see multi_tensor_optim.h).
//
// An optimizer step is memory-bound: AdamW reads param, grad, exp_avg and exp_avg_sq and
// writes three of them back. Here each element is loaded once, updated in registers and stored
// once, and the work is cut into chunks of at most kChunk elements across all tensors of the
// group, so small tensors (biases) and large ones (weights) share one parallel loop over
// OpenMP threads instead of one parallel region per tensor.
//
// The arithmetic repeats the reference implementations operation for operation (torch.optim's
// single-tensor Adam, the adabound package's AdaBound), in the precision of the parameters,
// with the per-tensor scalars (bias corrections, bounds) computed in double and rounded once,
// as torch does with Python scalars. Rounding follows torch's CPU kernels too: on CPUs with
// AVX2 and FMA, torch computes `add(alpha=)`, `addcmul` and `lerp` as fused multiply-adds, so
// the loop (multi_tensor_optim_kernel.h) has a variant compiled for those CPUs that does the
// same, chosen at run time, next to a portable one with separate roundings. Everything is
// compiled with -ffp-contract=off so that the compiler fuses nothing on its own. Two known
// differences keep the results from being bit for bit torch's (they agree within float32
// rounding): Adam multiplies by 1 / sqrt(bias_correction2) where torch divides, and sqrt here
// is correctly rounded where torch's CPU sqrt is sometimes one ulp off.
#include "multi_tensor_optim.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "multi_tensor_optim_kernel.h"

namespace nol_fast {
namespace {

// 32 Ki elements: 128 KiB per fp32 stream, large enough that a chunk's loop runs long and
// small enough that a 10 M-element group gives every thread many chunks to balance.
constexpr int64_t kChunk = 32768;
// Below this many elements in the whole group a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 65536;

bool cpu_has_fma() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

template <typename T>
Coefs<T> coefficients(const StepHyper& h, double step) {
  const double bias_correction1 = 1.0 - std::pow(h.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(h.beta2, step);
  if (!h.adabound) {
    return {static_cast<T>(h.lr / bias_correction1),
            static_cast<T>(1.0 / std::sqrt(bias_correction2)), T(0)};
  }
  const double step_size = h.lr * std::sqrt(bias_correction2) / bias_correction1;
  const double final_lr = h.base_lr != 0.0 ? h.final_lr * h.lr / h.base_lr : 0.0;
  const double lower = final_lr * (1.0 - 1.0 / (h.gamma * step + 1.0));
  const double upper = h.gamma != 0.0 ? final_lr * (1.0 + 1.0 / (h.gamma * step))
                                      : std::numeric_limits<double>::infinity();
  return {static_cast<T>(step_size), static_cast<T>(lower), static_cast<T>(upper)};
}

template <typename T>
Uniform<T> uniform(const StepHyper& h, const float* grad_scale) {
  const T weight = static_cast<T>(1.0 - h.beta1);
  return {weight,
          T(1) - weight,
          std::abs(weight) < T(0.5),
          static_cast<T>(h.beta1),
          static_cast<T>(1.0 - h.beta1),
          static_cast<T>(h.beta2),
          static_cast<T>(1.0 - h.beta2),
          static_cast<T>(h.eps),
          static_cast<T>(h.weight_decay),
          static_cast<T>(1.0 - h.lr * h.weight_decay),
          h.maximize ? T(-1) : T(1),
          grad_scale != nullptr ? static_cast<T>(*grad_scale) : T(1)};
}

template <typename T>
void step_typed(const std::vector<int64_t>& table, const StepHyper& h, const float* grad_scale,
                int num_threads) {
  const int64_t n_tensors = static_cast<int64_t>(table.size()) / kTableColumns;
  std::vector<Coefs<T>> coefs;
  std::vector<detail::Chunk> chunks;
  coefs.reserve(n_tensors);
  int64_t total = 0;
  for (int64_t t = 0; t < n_tensors; ++t) {
    const int64_t* row = &table[t * kTableColumns];
    float* step = address<float>(row[5]);
    *step += 1.0f;
    coefs.push_back(coefficients<T>(h, static_cast<double>(*step)));
    const int64_t numel = row[6];
    for (int64_t begin = 0; begin < numel; begin += kChunk) {
      chunks.push_back({t, begin, begin + kChunk < numel ? begin + kChunk : numel});
    }
    total += numel;
  }
  const StepArgs<T> args{table.data(),
                         chunks.data(),
                         static_cast<int64_t>(chunks.size()),
                         coefs.data(),
                         uniform<T>(h, grad_scale),
                         h.adabound,
                         h.amsgrad,
                         h.weight_decay == 0.0 ? 0 : (h.decoupled ? 2 : 1),
                         grad_scale != nullptr};
  void (*update)(const StepArgs<T>&, int64_t) = update_chunk<T, false>;
  if (cpu_has_fma()) update = detail::update_chunk_fused;
  const int64_t n = args.n_chunks;
#pragma omp parallel for schedule(static) num_threads(num_threads > 1 ? num_threads : 1) \
    if (total >= kParallelMin)
  for (int64_t c = 0; c < n; ++c) {
    update(args, c);
  }
}

}  // namespace

void multi_tensor_step_cpu(const std::vector<int64_t>& table, ScalarType dtype,
                           const StepHyper& hyper, const float* grad_scale,
                           const float* found_inf, int num_threads) {
  if (found_inf != nullptr && *found_inf != 0.0f) {
    return;
  }
  if (dtype == ScalarType::Float64) {
    step_typed<double>(table, hyper, grad_scale, num_threads);
  } else {
    step_typed<float>(table, hyper, grad_scale, num_threads);
  }
}

}  // namespace nol_fast

// Multi-tensor Adam/AdamW and AdaBound steps on the CPU: one pass over every element of every
// tensor of a parameter group, parallel over chunks of all tensors at once.
//
// The Python side (nol_fast/ops/cpu/optim.py) describes the tensors by address in a flat int64
// table, so this code needs no torch headers and the compiled module does not depend on the
// torch version it runs with.
#pragma once

#include <cstdint>
#include <vector>

namespace nol_fast {

// Columns of one table row: addresses of param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (0
// when unused) and of the float32 step counter, then the element count.
constexpr int kTableColumns = 7;

enum class ScalarType : int { Float32 = 0, Float64 = 1 };

struct StepHyper {
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
  bool decoupled;  // AdamW-style decay p *= 1 - lr * wd instead of g += wd * p
  bool amsgrad;    // normalise by the running maximum of exp_avg_sq (AMSGrad / AMSBound)
  bool maximize;   // Adam only
  bool adabound;
  double base_lr;   // AdaBound only: the group's initial lr, scales final_lr by lr / base_lr
  double final_lr;  // AdaBound only
  double gamma;     // AdaBound only
};

// Update every tensor of `table` (rows of kTableColumns) in place, after advancing its step
// counter by one. Nothing is written, counters included, when `found_inf` points to a nonzero
// value; gradients are divided by `*grad_scale` when it is not null.
void multi_tensor_step_cpu(const std::vector<int64_t>& table, ScalarType dtype,
                           const StepHyper& hyper, const float* grad_scale,
                           const float* found_inf, int num_threads);

}  // namespace nol_fast

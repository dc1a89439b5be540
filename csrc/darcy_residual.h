// The Darcy residual r = -div(a grad u) - f by central finite differences on 2-D planes, with
// its mean square, and the gradients of that mean square (CPU, OpenMP over planes).
//
// Both derivatives use one first-derivative stencil (nol_fast/physics/stencils.py): radius R,
// W = 2R + 1 taps; interior points use the central row, the first and last R points of a
// non-periodic axis the one-sided rows, a periodic axis wraps around. The Python side
// (nol_fast/ops/darcy_residual/cpu.py) passes the (2R + 1) x W table (left rows, interior,
// right rows) and checks shapes, dtypes and layouts first.
#pragma once

#include <cstdint>
#include <vector>

#include "multi_tensor_optim.h"  // ScalarType

namespace nol_fast {

struct DarcyGrid {
  int64_t planes;  // batch * channels; each plane is nx * ny contiguous values
  int64_t nx, ny;  // points along x (rows, stride ny) and y (columns, stride 1)
  double hx, hy;   // grid spacings
  bool periodic_x, periodic_y;
  int radius;                  // R of the stencil
  std::vector<double> table;   // (2R + 1) x (2R + 1) weights at spacing 1
};

// r = -(Dx(a Dx u) + Dy(a Dy u)) - f on every plane, and *loss = mean(r^2). `f` may be null
// (then f_value is used everywhere).
void darcy_residual_forward_cpu(const DarcyGrid& grid, ScalarType dtype, const void* u,
                                const void* a, const void* f, double f_value, void* r,
                                void* loss, int num_threads);

// With g = (2 * grad_loss / N) r: grad_u = -(Dx^T(a Dx^T g) + Dy^T(a Dy^T g)),
// grad_a = -(Dx u Dx^T g + Dy u Dy^T g) and grad_f = -g (grad_f may be null).
void darcy_residual_backward_cpu(const DarcyGrid& grid, ScalarType dtype, const void* grad_loss,
                                 const void* r, const void* u, const void* a, void* grad_u,
                                 void* grad_a, void* grad_f, int num_threads);

}  // namespace nol_fast

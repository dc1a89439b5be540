// Darcy residual kernels; see darcy_residual.h.
//
// A plane (128 x 128 floats is 64 KiB) and the few scratch planes a thread works on stay in
// its L2 cache, so the kernels read u, a (and f) and write r (or the gradients) once from
// memory; the stencil passes in between run out of cache. Along x (rows) a tap is an axpy
// over a whole row, along y the interior is a shifted axpy and only the R edge points on each
// side go through the tap tables, so every inner loop is contiguous and vectorises.
#include "darcy_residual.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace nol_fast {
namespace {

// Taps of every point of one axis: point i reads src[i * W + s] with weight wt[i * W + s].
template <typename T>
struct AxisTaps {
  int64_t n = 0;
  int radius = 0, width = 0;
  std::vector<int64_t> src;
  std::vector<T> wt;
  std::vector<T> interior;  // central row, already divided by h

  AxisTaps(int64_t n_, double h, bool periodic, int radius_, const std::vector<double>& table)
      : n(n_), radius(radius_), width(2 * radius_ + 1), src(n_ * width), wt(n_ * width),
        interior(width) {
    const double* centre = table.data() + static_cast<size_t>(radius) * width;
    for (int s = 0; s < width; ++s) interior[s] = static_cast<T>(centre[s] / h);
    for (int64_t i = 0; i < n; ++i) {
      const double* row = centre;
      int64_t start = i - radius;
      if (!periodic && i < radius) {
        row = table.data() + static_cast<size_t>(i) * width;
        start = 0;
      } else if (!periodic && i >= n - radius) {
        row = table.data() + static_cast<size_t>(radius + 1 + (i - (n - radius))) * width;
        start = n - width;
      }
      for (int s = 0; s < width; ++s) {
        src[i * width + s] = ((start + s) % n + n) % n;  // wraps only on a periodic axis
        wt[i * width + s] = static_cast<T>(row[s] / h);
      }
    }
  }
};

// out (nx x ny) = Dx in, or += when accumulate; Dx along rows: a tap is a whole-row axpy.
template <typename T>
void dx_forward(const AxisTaps<T>& x, int64_t ny, const T* in, T* out, bool accumulate) {
  for (int64_t i = 0; i < x.n; ++i) {
    T* o = out + i * ny;
    if (!accumulate) std::memset(o, 0, sizeof(T) * ny);
    for (int s = 0; s < x.width; ++s) {
      const T w = x.wt[i * x.width + s];
      const T* row = in + x.src[i * x.width + s] * ny;
      for (int64_t j = 0; j < ny; ++j) o[j] += w * row[j];
    }
  }
}

// out += Dx^T in: row i of `in` is scattered to the rows its taps read.
template <typename T>
void dx_transpose(const AxisTaps<T>& x, int64_t ny, const T* in, T* out) {
  for (int64_t i = 0; i < x.n; ++i) {
    const T* row = in + i * ny;
    for (int s = 0; s < x.width; ++s) {
      const T w = x.wt[i * x.width + s];
      T* o = out + x.src[i * x.width + s] * ny;
      for (int64_t j = 0; j < ny; ++j) o[j] += w * row[j];
    }
  }
}

// out (one row of ny) = Dy in, or += when accumulate.
template <typename T>
void dy_forward_row(const AxisTaps<T>& y, const T* in, T* out, bool accumulate) {
  const int64_t n = y.n, r = y.radius;
  if (!accumulate) std::memset(out, 0, sizeof(T) * n);
  for (int s = 0; s < y.width; ++s) {
    const T w = y.interior[s];
    const T* shifted = in - r + s;
    for (int64_t j = r; j < n - r; ++j) out[j] += w * shifted[j];
  }
  for (int64_t j = 0; j < r; ++j) {
    for (int64_t e : {j, n - 1 - j}) {
      T acc = 0;
      for (int s = 0; s < y.width; ++s) acc += y.wt[e * y.width + s] * in[y.src[e * y.width + s]];
      out[e] += acc;
    }
  }
}

// out (one row) += Dy^T in.
template <typename T>
void dy_transpose_row(const AxisTaps<T>& y, const T* in, T* out) {
  const int64_t n = y.n, r = y.radius;
  for (int s = 0; s < y.width; ++s) {
    const T w = y.interior[s];
    T* shifted = out - r + s;
    for (int64_t j = r; j < n - r; ++j) shifted[j] += w * in[j];
  }
  for (int64_t j = 0; j < r; ++j) {
    for (int64_t e : {j, n - 1 - j}) {
      for (int s = 0; s < y.width; ++s) out[y.src[e * y.width + s]] += y.wt[e * y.width + s] * in[e];
    }
  }
}

template <typename T>
void forward_typed(const DarcyGrid& g, const T* u, const T* a, const T* f, double f_value, T* r,
                   T* loss, int num_threads) {
  const AxisTaps<T> x(g.nx, g.hx, g.periodic_x, g.radius, g.table);
  const AxisTaps<T> y(g.ny, g.hy, g.periodic_y, g.radius, g.table);
  const int64_t plane = g.nx * g.ny;
  std::vector<double> partial(g.planes, 0.0);
#pragma omp parallel num_threads(num_threads > 1 ? num_threads : 1)
  {
    std::vector<T> qx(plane), qy(plane);  // the fluxes a Dx u and a Dy u
#pragma omp for schedule(static)
    for (int64_t p = 0; p < g.planes; ++p) {
      const T* up = u + p * plane;
      const T* ap = a + p * plane;
      T* rp = r + p * plane;
      dx_forward(x, g.ny, up, qx.data(), false);
      for (int64_t i = 0; i < g.nx; ++i) dy_forward_row(y, up + i * g.ny, qy.data() + i * g.ny, false);
      for (int64_t k = 0; k < plane; ++k) {
        qx[k] *= ap[k];
        qy[k] *= ap[k];
      }
      dx_forward(x, g.ny, qx.data(), rp, false);
      double sum = 0.0;
      for (int64_t i = 0; i < g.nx; ++i) {
        T* row = rp + i * g.ny;
        dy_forward_row(y, qy.data() + i * g.ny, row, true);
        const T* frow = f ? f + p * plane + i * g.ny : nullptr;
        const T fv = static_cast<T>(f_value);
        for (int64_t j = 0; j < g.ny; ++j) {
          const T value = -row[j] - (frow ? frow[j] : fv);
          row[j] = value;
          sum += static_cast<double>(value) * value;
        }
      }
      partial[p] = sum;
    }
  }
  double total = 0.0;
  for (double s : partial) total += s;  // in plane order: the result does not depend on threads
  *loss = static_cast<T>(total / static_cast<double>(g.planes * plane));
}

template <typename T>
void backward_typed(const DarcyGrid& g, const T* grad_loss, const T* r, const T* u, const T* a,
                    T* grad_u, T* grad_a, T* grad_f, int num_threads) {
  const AxisTaps<T> x(g.nx, g.hx, g.periodic_x, g.radius, g.table);
  const AxisTaps<T> y(g.ny, g.hy, g.periodic_y, g.radius, g.table);
  const int64_t plane = g.nx * g.ny;
  const T scale = static_cast<T>(2.0 * static_cast<double>(*grad_loss) /
                                 static_cast<double>(g.planes * plane));
#pragma omp parallel num_threads(num_threads > 1 ? num_threads : 1)
  {
    std::vector<T> gr(plane), hx(plane), hy(plane), du(plane);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < g.planes; ++p) {
      const T* rp = r + p * plane;
      const T* up = u + p * plane;
      const T* ap = a + p * plane;
      T* gu = grad_u + p * plane;
      T* ga = grad_a + p * plane;
      for (int64_t k = 0; k < plane; ++k) gr[k] = scale * rp[k];
      if (grad_f) {
        T* gf = grad_f + p * plane;
        for (int64_t k = 0; k < plane; ++k) gf[k] = -gr[k];
      }
      // hx = Dx^T g, hy = Dy^T g
      std::fill(hx.begin(), hx.end(), T(0));
      std::fill(hy.begin(), hy.end(), T(0));
      dx_transpose(x, g.ny, gr.data(), hx.data());
      for (int64_t i = 0; i < g.nx; ++i) dy_transpose_row(y, gr.data() + i * g.ny, hy.data() + i * g.ny);
      // grad_a = -(Dx u hx + Dy u hy)
      dx_forward(x, g.ny, up, du.data(), false);
      for (int64_t k = 0; k < plane; ++k) ga[k] = -du[k] * hx[k];
      for (int64_t i = 0; i < g.nx; ++i) {
        T* row = du.data() + i * g.ny;
        dy_forward_row(y, up + i * g.ny, row, false);
        for (int64_t j = 0; j < g.ny; ++j) ga[i * g.ny + j] -= row[j] * hy[i * g.ny + j];
      }
      // grad_u = -(Dx^T(a hx) + Dy^T(a hy))
      for (int64_t k = 0; k < plane; ++k) {
        hx[k] *= -ap[k];
        hy[k] *= -ap[k];
      }
      std::memset(gu, 0, sizeof(T) * plane);
      dx_transpose(x, g.ny, hx.data(), gu);
      for (int64_t i = 0; i < g.nx; ++i) dy_transpose_row(y, hy.data() + i * g.ny, gu + i * g.ny);
    }
  }
}

void check(const DarcyGrid& g) {
  const int64_t width = 2 * g.radius + 1;
  if (g.radius < 1 || static_cast<int64_t>(g.table.size()) != width * width) {
    throw std::invalid_argument("darcy_residual: the table must hold (2R + 1)^2 weights");
  }
  // A periodic axis needs the 2R + 1 central points, a bounded one the W = 2R + 1 one-sided.
  if (g.nx < width || g.ny < width || g.planes < 0) {
    throw std::invalid_argument("darcy_residual: the grid is smaller than the stencil");
  }
}

}  // namespace

void darcy_residual_forward_cpu(const DarcyGrid& grid, ScalarType dtype, const void* u,
                                const void* a, const void* f, double f_value, void* r,
                                void* loss, int num_threads) {
  check(grid);
  if (dtype == ScalarType::Float64) {
    forward_typed(grid, static_cast<const double*>(u), static_cast<const double*>(a),
                  static_cast<const double*>(f), f_value, static_cast<double*>(r),
                  static_cast<double*>(loss), num_threads);
  } else {
    forward_typed(grid, static_cast<const float*>(u), static_cast<const float*>(a),
                  static_cast<const float*>(f), f_value, static_cast<float*>(r),
                  static_cast<float*>(loss), num_threads);
  }
}

void darcy_residual_backward_cpu(const DarcyGrid& grid, ScalarType dtype, const void* grad_loss,
                                 const void* r, const void* u, const void* a, void* grad_u,
                                 void* grad_a, void* grad_f, int num_threads) {
  check(grid);
  if (dtype == ScalarType::Float64) {
    backward_typed(grid, static_cast<const double*>(grad_loss), static_cast<const double*>(r),
                   static_cast<const double*>(u), static_cast<const double*>(a),
                   static_cast<double*>(grad_u), static_cast<double*>(grad_a),
                   static_cast<double*>(grad_f), num_threads);
  } else {
    backward_typed(grid, static_cast<const float*>(grad_loss), static_cast<const float*>(r),
                   static_cast<const float*>(u), static_cast<const float*>(a),
                   static_cast<float*>(grad_u), static_cast<float*>(grad_a),
                   static_cast<float*>(grad_f), num_threads);
  }
}

}  // namespace nol_fast

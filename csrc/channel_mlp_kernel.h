// The loops of the fused channel MLP (channel_mlp.h), compiled twice like the epilogues:
// portable (cpu_kernels.cpp) and for AVX-512 (kernels_avx512.cpp); kernels_amx.cpp compiles
// them a third time with the products of channel_mlp_amx.h.
//
// A thread takes its rows kMlpTileRows at a time. Tiles are float32 (rows, stride) buffers, the
// stride being the widest layer rounded up to whole blocks of the block product. The products
// (a layer's GEMM, its input gradient's, its weight gradient's sum) are a policy of the row
// loops: FmaProducts here runs the block product over the tile (rows rounded up to kBlockM;
// the rows past the tile's end are computed and never stored), with the weights converted
// once per call to float32 in the layouts the products read, zero-padded, so that padded
// columns of a layer's output are zero.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "channel_mlp.h"
#include "cpu_kernel_common.h"
#include "pointwise_epilogue_kernel.h"
#include "row_reduction_kernel.h"

namespace nol_fast {
namespace {

constexpr int64_t kMlpTileRows = 64;

// The weights of one call in the layouts of its products, float32, zero-padded.
struct MlpWeights {
  int64_t stride = 0;  // of the tile buffers
  // forward: W^T, (K, round_up(N, kBlockN)); backward: W, (N, round_up(K, kBlockN))
  std::vector<std::vector<float>> matrices;
};

// m (out, in), row-major, as float32 (in, round_up(out, kBlockN)): the b of a @ m^T.
inline std::vector<float> padded_transpose(const float* m, int64_t out, int64_t in) {
  const int64_t cols = round_up(out, kBlockN);
  std::vector<float> t(static_cast<size_t>(in * cols), 0.0f);
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t j = 0; j < in; ++j) t[j * cols + i] = m[i * in + j];
  }
  return t;
}

// m (out, in), row-major, as float32 (out, round_up(in, kBlockN)): the b of g @ m.
inline std::vector<float> padded_rows(const float* m, int64_t out, int64_t in) {
  const int64_t cols = round_up(in, kBlockN);
  std::vector<float> t(static_cast<size_t>(out * cols), 0.0f);
  for (int64_t i = 0; i < out; ++i) std::copy(m + i * in, m + (i + 1) * in, &t[i * cols]);
  return t;
}

inline MlpWeights prepare_weights(const ChannelMlp& a, bool forward) {
  MlpWeights w;
  for (int64_t l = 0; l <= a.layers; ++l) {
    w.stride = std::max(w.stride, round_up(a.widths[l], kBlockN));
  }
  for (int64_t l = 0; l < a.layers; ++l) {
    const int64_t k = a.widths[l], n = a.widths[l + 1];
    w.matrices.push_back(forward ? padded_transpose(a.weights[l], n, k)
                                 : padded_rows(a.weights[l], n, k));
  }
  return w;
}

// c (rows x cols of a tile, row stride `stride`) += a (rows x k, same stride) @ b (k x cols).
inline void tile_gemm(const float* a, int64_t rows, int64_t k, const float* b, int64_t cols,
                      float* c, int64_t stride) {
  for (int64_t i = 0; i < round_up(rows, kBlockM); i += kBlockM) {
    for (int64_t j = 0; j < cols; j += kBlockN) {
      micro_kernel(a + i * stride, 1, stride, b + j, cols, k, c + i * stride + j, stride);
    }
  }
}

// The products of the MLP on the FMA units: the block product over the float32 tiles, with
// the weights as prepare_weights lays them out. A policy of the row loops below
// (channel_mlp_amx.h has the one on AMX tiles): per call the prepared weights, per thread a
// Thread of scratch, and the weight-gradient sums as GradSum.
class WeightGradSum;

class FmaProducts {
 public:
  using GradSum = WeightGradSum;
  struct Thread {
    explicit Thread(const FmaProducts&) {}
  };

  FmaProducts(const ChannelMlp& a, bool forward) : w_(prepare_weights(a, forward)) {}

  int64_t stride() const { return w_.stride; }

  // y (rows x n of a tile, holding the bias) += h (rows x k) @ W_l^T
  void forward(Thread&, const float* h, int64_t rows, int64_t l, int64_t k, int64_t n,
               float* y, int64_t stride) const {
    tile_gemm(h, rows, k, w_.matrices[l].data(), round_up(n, kBlockN), y, stride);
  }

  // next (rows x k of a tile) = g (rows x n) @ W_l
  void backward(Thread&, const float* g, int64_t rows, int64_t l, int64_t n, int64_t k,
                float* next, int64_t stride) const {
    const int64_t cols = round_up(k, kBlockN);
    for (int64_t r = 0; r < round_up(rows, kBlockM); ++r) {
      std::fill(&next[r * stride], &next[r * stride] + cols, 0.0f);
    }
    tile_gemm(g, rows, n, w_.matrices[l].data(), cols, next, stride);
  }

 private:
  MlpWeights w_;
};

// Layers with at most this many outputs (a projection's last layer has one) run as dot
// products over the inputs instead of the block product, which would pad them to kBlockN.
constexpr int64_t kNarrowOutputs = 4;

// y (rows x n, row stride `stride`) = bias + h (rows x k) @ weight^T, weight (n, k) row-major.
inline void narrow_layer(const float* h, int64_t rows, int64_t k, const float* weight, int64_t n,
                         const float* bias, float* y, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < k; ++i) sum += h[r * stride + i] * weight[j * k + i];
      y[r * stride + j] = sum + bias[j];
    }
  }
}

template <typename T>
inline void load_tile(const T* src, int64_t rows, int64_t cols, float* tile, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) tile[r * stride + j] = to_float(src[r * cols + j]);
  }
}

template <typename T>
inline void store_tile(const float* tile, int64_t stride, int64_t rows, int64_t cols, T* dst) {
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = from_float<T>(tile[r * stride + j]);
  }
}

// The layers' biases, zero-padded to whole blocks of the products.
inline std::vector<std::vector<float>> padded_biases(const ChannelMlp& a) {
  std::vector<std::vector<float>> biases;
  for (int64_t l = 0; l < a.layers; ++l) {
    std::vector<float> b(static_cast<size_t>(round_up(a.widths[l + 1], kBlockN)), 0.0f);
    std::copy(a.biases[l], a.biases[l] + a.widths[l + 1], b.begin());
    biases.push_back(std::move(b));
  }
  return biases;
}

// Rows [begin, end) of the MLP, tile by tile, all layers per tile.
template <typename T, Activation A, typename P>
void mlp_forward_rows(const ChannelMlp& a, const P& products,
                      const std::vector<std::vector<float>>& biases, int64_t begin,
                      int64_t end) {
  const int64_t stride = products.stride();
  typename P::Thread thread(products);
  std::vector<float> h(static_cast<size_t>(kMlpTileRows * stride), 0.0f);
  std::vector<float> y(h.size(), 0.0f);
  for (int64_t start = begin; start < end; start += kMlpTileRows) {
    const int64_t rows = std::min(kMlpTileRows, end - start);
    load_tile(static_cast<const T*>(a.x) + start * a.widths[0], rows, a.widths[0], h.data(),
              stride);
    for (int64_t l = 0; l < a.layers; ++l) {
      const int64_t k = a.widths[l], n = a.widths[l + 1], cols = round_up(n, kBlockN);
      const float* bias = biases[l].data();
      if (n <= kNarrowOutputs) {
        narrow_layer(h.data(), rows, k, a.weights[l], n, bias, y.data(), stride);
      } else {
        for (int64_t r = 0; r < round_up(rows, kBlockM); ++r) {
          std::copy(bias, bias + cols, &y[r * stride]);
        }
        products.forward(thread, h.data(), rows, l, k, n, y.data(), stride);
      }
      if (l + 1 == a.layers) {
        store_tile(y.data(), stride, rows, n, static_cast<T*>(a.out) + start * n);
        break;
      }
      T* pre = static_cast<T*>(a.pres[l]) + start * n;
      for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          // the activation of the value as stored, which the backward pass recomputes
          const T stored = from_float<T>(y[r * stride + j]);
          pre[r * n + j] = stored;
          h[r * stride + j] = activate<A>(to_float(stored)).value;
        }
      }
    }
  }
}

// A thread's sum of one weight's gradient, (n, k) = g^T h over rows of tiles. It is summed as
// (n, k) or as its transpose, whichever pads less to whole blocks of the block product (the
// lifting's first layer has k = 3).
class WeightGradSum {
 public:
  WeightGradSum(int64_t n, int64_t k)
      : transposed_(round_up(k, kBlockM) * round_up(n, kBlockN) <
                    round_up(n, kBlockM) * round_up(k, kBlockN)),
        rows_(round_up(transposed_ ? k : n, kBlockM)),
        cols_(round_up(transposed_ ? n : k, kBlockN)),
        sum_(static_cast<size_t>(rows_ * cols_), 0.0f) {}

  // += g^T h over `rows` rows of the tiles g (rows, n) and h (rows, k), row stride `stride`
  // (at least the padded width of either: the block product reads whole blocks).
  void add(FmaProducts::Thread&, const float* g, const float* h, int64_t rows, int64_t stride) {
    const float* p = transposed_ ? h : g;
    const float* q = transposed_ ? g : h;
    for (int64_t i = 0; i < rows_; i += kBlockM) {
      for (int64_t j = 0; j < cols_; j += kBlockN) {
        micro_kernel(p + i, stride, 1, q + j, stride, rows, sum_.data() + i * cols_ + j, cols_);
      }
    }
  }

  float at(int64_t i, int64_t j) const {
    return transposed_ ? sum_[j * cols_ + i] : sum_[i * cols_ + j];
  }

 private:
  bool transposed_;
  int64_t rows_, cols_;
  std::vector<float> sum_;
};

// total[j] += the sum over `rows` rows of the tile g (row stride `stride`), j < n; float per
// tile, double across tiles.
inline void add_column_sums(const float* g, int64_t rows, int64_t n, int64_t stride,
                            double* total) {
  for (int64_t j0 = 0; j0 < n; j0 += kBlockN) {
    const int64_t width = std::min(kBlockN, n - j0);
    float sums[kBlockN] = {};
    for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) sums[j] += g[r * stride + j0 + j];
    }
    for (int64_t j = 0; j < width; ++j) total[j0 + j] += sums[j];
  }
}

// A thread's sums of the MLP's weight and bias gradients.
template <typename GradSum>
struct MlpGradSums {
  std::vector<GradSum> weights;
  std::vector<std::vector<double>> biases;
};

template <typename T, Activation A, typename P>
void mlp_backward_rows(const ChannelMlp& a, const P& products, int64_t begin, int64_t end,
                       MlpGradSums<typename P::GradSum>& sums) {
  const int64_t stride = products.stride();
  typename P::Thread thread(products);
  const size_t size = static_cast<size_t>(kMlpTileRows * stride);
  std::vector<float> g(size, 0.0f), next(size, 0.0f), h(size, 0.0f), deriv(size, 0.0f);
  const int64_t last = a.layers - 1;
  for (int64_t start = begin; start < end; start += kMlpTileRows) {
    const int64_t rows = std::min(kMlpTileRows, end - start);
    load_tile(static_cast<const T*>(a.grad_out) + start * a.widths[a.layers], rows,
              a.widths[a.layers], g.data(), stride);
    for (int64_t l = last; l >= 0; --l) {
      const int64_t k = a.widths[l], n = a.widths[l + 1];
      // the layer's input, and the derivative of the activation that made it
      if (l == 0) {
        load_tile(static_cast<const T*>(a.x) + start * k, rows, k, h.data(), stride);
      } else {
        const T* pre = static_cast<const T*>(a.pres[l - 1]) + start * k;
        for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
          for (int64_t j = 0; j < k; ++j) {
            const ValueGrad v = activate<A>(to_float(pre[r * k + j]));
            h[r * stride + j] = v.value;
            deriv[r * stride + j] = v.grad;
          }
        }
      }
      // weight gradient g^T h over the tile's rows, bias gradient sum(g)
      sums.weights[l].add(thread, g.data(), h.data(), rows, stride);
      add_column_sums(g.data(), rows, n, stride, sums.biases[l].data());
      if (l == 0 && a.grad_x == nullptr) break;
      // the input gradient g @ W, then through the activation's derivative
      products.backward(thread, g.data(), rows, l, n, k, next.data(), stride);
      if (l == 0) {
        store_tile(next.data(), stride, rows, k, static_cast<T*>(a.grad_x) + start * k);
        break;
      }
      for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
        for (int64_t j = 0; j < k; ++j) {
          g[r * stride + j] = next[r * stride + j] * deriv[r * stride + j];
        }
      }
    }
  }
}

inline int mlp_threads(const ChannelMlp& a, int num_threads) {
  int64_t widest = 0;
  for (int64_t l = 0; l <= a.layers; ++l) widest = std::max(widest, a.widths[l]);
  return a.rows * widest >= kParallelMinElements && num_threads > 1 ? num_threads : 1;
}

// A run-time storage type and activation as compile-time ones: calls
// f(storage_tag, activation_tag).
template <typename F>
void with_storage_and_activation(const ChannelMlp& a, F f) {
  with_storage(a.storage, [&](auto storage_tag) {
    with_activation(a.act, [&](auto activation_tag) { f(storage_tag, activation_tag); });
  });
}

// The MLP's forward pass with the products of P.
template <typename P>
void dispatch_mlp_forward(const ChannelMlp& a, int num_threads) {
  const P products(a, true);
  const std::vector<std::vector<float>> biases = padded_biases(a);
  const int threads = mlp_threads(a, num_threads);
  with_storage_and_activation(a, [&](auto storage_tag, auto activation_tag) {
    using T = decltype(storage_tag);
    constexpr Activation A = decltype(activation_tag)::value;
#pragma omp parallel num_threads(threads)
    {
      const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
      mlp_forward_rows<T, A>(a, products, biases, a.rows * id / n, a.rows * (id + 1) / n);
    }
  });
}

// The MLP's backward pass with the products of P.
template <typename P>
void dispatch_mlp_backward(const ChannelMlp& a, int num_threads) {
  using GradSum = typename P::GradSum;
  const P products(a, false);
  const int threads = mlp_threads(a, num_threads);
  std::vector<MlpGradSums<GradSum>> sums(static_cast<size_t>(threads));
  for (MlpGradSums<GradSum>& s : sums) {
    for (int64_t l = 0; l < a.layers; ++l) {
      s.weights.emplace_back(a.widths[l + 1], a.widths[l]);
      s.biases.emplace_back(static_cast<size_t>(a.widths[l + 1]), 0.0);
    }
  }
  with_storage_and_activation(a, [&](auto storage_tag, auto activation_tag) {
    using T = decltype(storage_tag);
    constexpr Activation A = decltype(activation_tag)::value;
#pragma omp parallel num_threads(threads)
    {
      const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
      mlp_backward_rows<T, A>(a, products, a.rows * id / n, a.rows * (id + 1) / n, sums[id]);
    }
  });
  // the threads' sums, in thread order
  for (int64_t l = 0; l < a.layers; ++l) {
    const int64_t n = a.widths[l + 1], k = a.widths[l];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        float total = 0.0f;
        for (const MlpGradSums<GradSum>& s : sums) total += s.weights[l].at(i, j);
        a.grad_weights[l][i * k + j] = total;
      }
      double bias = 0.0;
      for (const MlpGradSums<GradSum>& s : sums) bias += s.biases[l][i];
      a.grad_biases[l][i] = static_cast<float>(bias);
    }
  }
}

}  // namespace
}  // namespace nol_fast

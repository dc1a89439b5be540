// The products of the fused channel MLP (channel_mlp_kernel.h) on AMX tiles (amx_tiles.h), for
// bfloat16 storage; included only by kernels_amx.cpp.
//
// The row loops and their float32 tiles stay those of the FMA kernel: bias, activations and
// their derivatives, bias gradients. The products round their operands to bfloat16 as torch's
// autocast does for a linear layer (the weights, the layer inputs, and the gradients that flow
// back) and sum in float32: a layer's product packs its tile of rows as A tiles against the
// weight's B tiles, prepared once per call; a weight gradient g^T h packs g transposed and h as
// pairs of rows and adds into the thread's float32 sum.
#pragma once

#include <cstdint>
#include <vector>

#include "amx_tiles.h"
#include "channel_mlp_kernel.h"

namespace nol_fast {
namespace {

class AmxGradSum;

class AmxProducts {
 public:
  using GradSum = AmxGradSum;

  // A thread's tiles and packing buffers.
  struct Thread {
    explicit Thread(const AmxProducts& p)
        : rows(static_cast<size_t>(kMlpTileRows / kAmxRows * p.stride_ / kAmxDepth * kAmxTile)),
          left(static_cast<size_t>(p.stride_ / 16 * kMlpTileRows / kAmxDepth * kAmxTile)),
          right(left.size()) {}
    TileScope tiles;
    std::vector<bf16> rows, left, right;
  };

  AmxProducts(const ChannelMlp& a, bool forward) {
    for (int64_t l = 0; l <= a.layers; ++l) {
      stride_ = std::max(stride_, round_up(a.widths[l], kBlockN));
    }
    for (int64_t l = 0; l < a.layers; ++l) {
      const int64_t k = a.widths[l], n = a.widths[l + 1];
      // forward W^T (k, n), backward W (n, k), W being (n, k) row-major
      weights_.push_back(forward ? weight_tiles(a.weights[l], k, n, 1, k)
                                 : weight_tiles(a.weights[l], n, k, k, 1));
    }
  }

  int64_t stride() const { return stride_; }

  // y (rows x n of a tile, holding the bias) += h (rows x k) @ W_l^T
  void forward(Thread& t, const float* h, int64_t rows, int64_t l, int64_t k, int64_t n,
               float* y, int64_t stride) const {
    product<true>(t, h, rows, k, weights_[l], n, y, stride);
  }

  // next (rows x k of a tile) = g (rows x n) @ W_l
  void backward(Thread& t, const float* g, int64_t rows, int64_t l, int64_t n, int64_t k,
                float* next, int64_t stride) const {
    product<false>(t, g, rows, n, weights_[l], k, next, stride);
  }

 private:
  // c (rows x cols of a tile) = (ADD: c +) a (rows x depth of a tile) times the weight's tiles
  template <bool ADD>
  static void product(Thread& t, const float* a, int64_t rows, int64_t depth,
                      const std::vector<bf16>& weight, int64_t cols, float* c, int64_t stride) {
    const int64_t steps = round_up(depth, kAmxDepth) / kAmxDepth;
    pack_rows(a, stride, 0, rows, depth, steps, t.rows.data());
    tile_product<ADD>(packed_tiles(t.rows.data(), steps), round_up(rows, kAmxRows) / kAmxRows,
                      weight.data(), round_up(cols, 16) / 16, steps, c, stride);
  }

  int64_t stride_ = 0;
  std::vector<std::vector<bf16>> weights_;
};

// A thread's sum of one weight's gradient, (n, k) = g^T h over rows of tiles, in float32
// (round_up(n, 16), round_up(k, 16)).
class AmxGradSum {
 public:
  AmxGradSum(int64_t n, int64_t k)
      : n_(n),
        k_(k),
        ld_(round_up(k, 16)),
        sum_(static_cast<size_t>(round_up(n, 16) * ld_), 0.0f) {}

  // += g^T h over `rows` rows of the tiles g (rows, n) and h (rows, k), row stride `stride`
  void add(AmxProducts::Thread& t, const float* g, const float* h, int64_t rows,
           int64_t stride) {
    const int64_t steps = round_up(rows, kAmxDepth) / kAmxDepth;
    pack_transposed(g, stride, 0, rows, n_, steps, t.left.data());
    pack_pairs(h, stride, 0, rows, k_, steps, t.right.data());
    tile_product<true>(packed_tiles(t.left.data(), steps), round_up(n_, 16) / 16,
                       t.right.data(), ld_ / 16, steps, sum_.data(), ld_);
  }

  float at(int64_t i, int64_t j) const { return sum_[i * ld_ + j]; }

 private:
  int64_t n_, k_, ld_;
  std::vector<float> sum_;
};

}  // namespace
}  // namespace nol_fast

// The channel MLP of an FNO's lifting and projection, fused on the CPU: every layer of a tile of
// rows (grid points) runs while the tile is in cache.
//
// In channels-last layout the MLP is a chain of GEMMs over a (rows, channels) matrix with a bias
// and an activation between them. Run layer by layer, each GEMM writes its whole output and the
// next pass reads it back: for an FNO's 64-wide hidden layers that is several MiB per pass, more
// traffic than arithmetic. Here a thread takes a tile of rows through all layers (GEMMs by the
// register-blocked block product of row_reduction_kernel.h, bias and activation applied on the
// tile), writing only the output and the hidden pre-activations the backward pass needs. The
// backward pass likewise takes a tile from the output gradient back to the input gradient,
// recomputing each hidden activation and its derivative from the kept pre-activation, and
// accumulates the weight and bias gradients per thread (float32 and double), added in thread
// order at the end.
//
// Storage is float32 or bfloat16 (the autocast dtype); arithmetic is float32 with float32
// weights. A bfloat16 pre-activation is activated as stored, so the backward pass recomputes
// exactly what the forward pass used.
#pragma once

#include <cstdint>

#include "pointwise_epilogue.h"

namespace nol_fast {

struct ChannelMlp {
  int64_t rows;
  int64_t layers;
  const int64_t* widths;        // layers + 1 entries: input, hidden..., output
  const void* x;                // (rows, widths[0])
  const float* const* weights;  // per layer, (widths[l + 1], widths[l]), row-major
  const float* const* biases;   // per layer, (widths[l + 1])
  void* const* pres;            // per hidden layer, (rows, widths[l + 1]): pre-activations
  Activation act;
  Storage storage;
  // forward
  void* out;  // (rows, widths[layers])
  // backward
  const void* grad_out;         // (rows, widths[layers])
  void* grad_x;                 // (rows, widths[0]), or null when not wanted
  float* const* grad_weights;   // per layer, like weights; overwritten
  float* const* grad_biases;    // per layer, like biases; overwritten
};

void channel_mlp_forward(const ChannelMlp& args, int num_threads);
void channel_mlp_backward(const ChannelMlp& args, int num_threads);

}  // namespace nol_fast

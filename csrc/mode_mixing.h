// The channel mixing of a spectral convolution on the CPU: on every kept Fourier mode m,
// y[b, m, :] = x[b, m, :] @ W[:, :, m] (complex), and its gradients.
//
// The truncated DFTs (nol_fast/ops/spectral_conv/cpu.py) leave the kept spectrum as real and
// imaginary parts in the activation's layout, (batch, 2, modes, channels) or (batch, channels,
// 2, modes), and the weight is a parameter of shape (in, out, *modes), complex. A batched
// complex GEMM over the modes needs both in (modes, ., .) layouts: five copies per block and
// step (the spectrum in and out of complex float32, the weight gathered and transposed, its
// gradient back to the weight's layout), which cost more than the products themselves. Here each
// thread takes a range of modes, reads the weight in its own layout (eight consecutive modes
// share a cache line), the spectra through strides, and writes the results where the DFTs and
// the optimizer want them.
//
// Spectra are stored as float32, bfloat16 or float64; products and sums are in the weight's
// precision (float32 for a complex64 weight, float64 for complex128), and a result does not
// depend on the number of threads.
#pragma once

#include <cstdint>

namespace nol_fast {

// The precision of a mixing: float32 and bfloat16 spectra go with a complex64 weight, float64
// spectra with a complex128 one.
enum class MixingStorage : int { kFloat32 = 0, kBFloat16 = 1, kFloat64 = 2 };

struct ModeMixing {
  int64_t batch;
  int64_t modes;     // kept modes
  int64_t in_ch;
  int64_t out_ch;
  // x: the input spectrum, element (b, part, m, c) at b * x_stride[0] + part * x_stride[1] +
  // m * x_stride[2] + c * x_stride[3] (part 0 real, 1 imaginary). grad_x has the same strides.
  const void* x;
  int64_t x_stride[4];
  // y: the output spectrum (forward, written) or its gradient (backward, read), (b, part, m, c).
  void* y;
  int64_t y_stride[4];
  // (in_ch, out_ch, w_modes) complex, real and imaginary parts interleaved; kept mode m is the
  // weight's mode w_offset[m].
  const void* weight;
  int64_t w_modes;
  const int64_t* w_offset;
  void* grad_x;       // backward: the input spectrum's gradient, written
  void* grad_weight;  // backward: like weight; the kept modes' entries are written, no others
  MixingStorage storage;
};

void mode_mixing_forward(const ModeMixing& args, int num_threads);
void mode_mixing_backward(const ModeMixing& args, int num_threads);

}  // namespace nol_fast

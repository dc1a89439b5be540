// The loops of the spectral channel mixing (mode_mixing.h), compiled twice like the epilogues:
// portable (cpu_kernels.cpp) and for AVX-512 (kernels_avx512.cpp).
//
// The weight parameter keeps the modes innermost: (in, out, modes), complex. The loops therefore
// run over blocks of kModeBlock kept modes, with the modes in the vector lanes, and read the
// weight in its own order, each entry's run of modes once per call: no transposed copy of the
// weight is made (a copy per mode costs more than the products: every entry of one mode sits on
// its own cache line). Each thread takes an equal share of the modes; for each block:
// 1. the block's spectrum rows (tens of KiB) are copied into buffers with the modes innermost,
//    real and imaginary parts apart, in the weight's precision, and so is the block of the weight;
// 2. the products run on those buffers: y[b][o] = sum_i x[b][i] w[i][o], kBatchBlock samples at
//    a time whose accumulators stay in registers over i (the input gradient likewise, with
//    conj(w)); the weight gradient, sum_b conj(x[b][i]) g[b][o], keeps kOutBlock outputs in
//    registers over the samples;
// 3. the results go back: the spectrum to its layout, the weight gradient to the weight's.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_kernel_common.h"
#include "mode_mixing.h"

namespace nol_fast {
namespace {

constexpr int64_t kModeBlock = 16;  // modes per block: one AVX-512 register of float32
constexpr int64_t kBatchBlock = 8;  // samples whose accumulators stay in registers
constexpr int64_t kOutBlock = 4;    // output channels whose weight gradients stay in registers
// Below this many complex multiply-adds the loops run on one thread.
constexpr int64_t kMixingParallelMin = 1 << 16;

template <typename A, typename T>
inline A load_as(T v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return to_float(v);
  } else {
    return static_cast<A>(v);
  }
}

template <typename T, typename A>
inline T store_as(A v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return from_float<bf16>(v);
  } else {
    return static_cast<T>(v);
  }
}

inline int64_t pad_to(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Real and imaginary planes of `rows` runs of kModeBlock values: a buffer of the calling
// thread (`which` of four), kept from call to call so that no block allocates. The loads zero
// the padding (lanes past the last mode, rows past the last sample or channel): it only reaches
// results that are not stored, but stale values there could be denormals, which slow the
// products down.
template <typename A>
class Block {
 public:
  Block(int which, int64_t rows) : rows_(rows) {
    static thread_local std::vector<A> buffers[4];
    std::vector<A>& buffer = buffers[which];
    const auto size = static_cast<size_t>(2 * rows * kModeBlock);
    if (buffer.size() < size) buffer.resize(size);
    data_ = buffer.data();
  }
  A* re(int64_t row) const { return data_ + row * kModeBlock; }
  A* im(int64_t row) const { return data_ + (rows_ + row) * kModeBlock; }

 private:
  int64_t rows_;
  A* data_;
};

// Modes [m0, m0 + count) of a spectrum (b, part, m, c) as block rows b * cols + c, cols at
// least `channels`.
template <typename T, typename A>
void load_spectrum(const void* data, const int64_t* stride, int64_t batch, int64_t channels,
                   int64_t m0, int64_t count, const Block<A>& out, int64_t cols) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < count; ++k) {
      const T* re = static_cast<const T*>(data) + b * stride[0] + (m0 + k) * stride[2];
      const T* im = re + stride[1];
      for (int64_t c = 0; c < channels; ++c) {
        out.re(b * cols + c)[k] = load_as<A>(re[c * stride[3]]);
        out.im(b * cols + c)[k] = load_as<A>(im[c * stride[3]]);
      }
    }
  }
  // zeros in the rows and lanes that the block products read but nothing loads (padding)
  const int64_t rows = pad_to(batch, kBatchBlock) * cols;
  for (int64_t row = 0; row < rows; ++row) {
    const bool padding = row >= batch * cols || row % cols >= channels;
    for (int64_t k = padding ? 0 : count; k < kModeBlock; ++k) {
      out.re(row)[k] = out.im(row)[k] = A(0);
    }
  }
}

// The inverse of load_spectrum, from block rows b * channels + c.
template <typename T, typename A>
void store_spectrum(void* data, const int64_t* stride, int64_t batch, int64_t channels,
                    int64_t m0, int64_t count, const Block<A>& in) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < count; ++k) {
      T* re = static_cast<T*>(data) + b * stride[0] + (m0 + k) * stride[2];
      T* im = re + stride[1];
      for (int64_t c = 0; c < channels; ++c) {
        re[c * stride[3]] = store_as<T>(in.re(b * channels + c)[k]);
        im[c * stride[3]] = store_as<T>(in.im(b * channels + c)[k]);
      }
    }
  }
}

// Calls move(value, re, im) for the weight entry (i, o) of every kept mode m0 + k < m0 + count
// (`value` its real and imaginary parts in `weight`, laid out like the parameter) and lane k of
// block row i * cols + o (`re`, `im`). Where the kept modes are consecutive modes of the weight
// (always, for a weight that holds exactly the kept modes) each entry's values are one run,
// which the loop reads or writes vectorised.
template <typename W, typename A, typename Move>
void weight_entries(const ModeMixing& p, W* weight, int64_t m0, int64_t count,
                    const Block<A>& block, int64_t cols, Move move) {
  const int64_t* at = p.w_offset + m0;
  bool run = true;
  for (int64_t k = 1; k < count; ++k) run = run && at[k] == at[0] + k;
  for (int64_t i = 0; i < p.in_ch; ++i) {
    for (int64_t o = 0; o < p.out_ch; ++o) {
      W* entry = weight + 2 * (i * p.out_ch + o) * p.w_modes;
      A* re = block.re(i * cols + o);
      A* im = block.im(i * cols + o);
      if (run) {
        W* values = entry + 2 * at[0];
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) move(values + 2 * k, re + k, im + k);
      } else {
        for (int64_t k = 0; k < count; ++k) move(entry + 2 * at[k], re + k, im + k);
      }
    }
  }
}

// The weight on kept modes [m0, m0 + count) as block rows i * cols + o, zeros in the lanes past
// count.
template <typename A>
void load_weight(const ModeMixing& p, int64_t m0, int64_t count, const Block<A>& out,
                 int64_t cols) {
  weight_entries(p, static_cast<const A*>(p.weight), m0, count, out, cols,
                 [](const A* value, A* re, A* im) {
                   *re = value[0];
                   *im = value[1];
                 });
  for (int64_t i = 0; i < p.in_ch; ++i) {
    for (int64_t o = 0; o < p.out_ch; ++o) {
      for (int64_t k = count; k < kModeBlock; ++k) {
        out.re(i * cols + o)[k] = out.im(i * cols + o)[k] = A(0);
      }
    }
  }
}

// The weight gradient's entries on kept modes [m0, m0 + count) from block rows i * cols + o.
template <typename A>
void store_weight(const ModeMixing& p, int64_t m0, int64_t count, const Block<A>& in,
                  int64_t cols) {
  weight_entries(p, static_cast<A*>(p.grad_weight), m0, count, in, cols,
                 [](A* value, const A* re, const A* im) {
                   value[0] = *re;
                   value[1] = *im;
                 });
}

// out[b][j] = sum over t < count of a[b][t] w(t, j) for the samples [b0, b0 + kBatchBlock)
// (a and out have rows for them all: the batch is padded to whole blocks), w(t, j) = the block
// row t * w_t + j * w_j, conjugated with ConjW. The rows of a are b * a_cols + t, those of out b * out_cols + j.
template <typename A, bool ConjW>
void batch_product(const Block<A>& a, int64_t a_cols, const Block<A>& w, int64_t w_t,
                   int64_t w_j, int64_t count, int64_t b0, int64_t j, const Block<A>& out,
                   int64_t out_cols) {
  constexpr A sw = ConjW ? A(-1) : A(1);
  A acc_re[kBatchBlock][kModeBlock] = {};
  A acc_im[kBatchBlock][kModeBlock] = {};
  for (int64_t t = 0; t < count; ++t) {
    const A* wr = w.re(t * w_t + j * w_j);
    const A* wi = w.im(t * w_t + j * w_j);
    for (int64_t r = 0; r < kBatchBlock; ++r) {
      const A* ar = a.re((b0 + r) * a_cols + t);
      const A* ai = a.im((b0 + r) * a_cols + t);
#pragma omp simd
      for (int64_t k = 0; k < kModeBlock; ++k) {
        const A wik = sw * wi[k];
        acc_re[r][k] = madd(ar[k], wr[k], madd(-ai[k], wik, acc_re[r][k]));
        acc_im[r][k] = madd(ar[k], wik, madd(ai[k], wr[k], acc_im[r][k]));
      }
    }
  }
  for (int64_t r = 0; r < kBatchBlock; ++r) {
    A* re = out.re((b0 + r) * out_cols + j);
    A* im = out.im((b0 + r) * out_cols + j);
#pragma omp simd
    for (int64_t k = 0; k < kModeBlock; ++k) {
      re[k] = acc_re[r][k];
      im[k] = acc_im[r][k];
    }
  }
}

// grad_w[i][o] = sum over b of conj(x[b][i]) g[b][o] for o in [o0, o0 + kOutBlock); the rows
// are b * in_cols + i of x, b * out_cols + o of g and i * out_cols + o of grad_w, which have
// columns for all those o.
template <typename A>
void weight_gradient(const Block<A>& x, int64_t in_cols, const Block<A>& g, int64_t out_cols,
                     int64_t batch, int64_t i, int64_t o0, const Block<A>& grad_w) {
  A acc_re[kOutBlock][kModeBlock] = {};
  A acc_im[kOutBlock][kModeBlock] = {};
  for (int64_t b = 0; b < batch; ++b) {
    const A* xr = x.re(b * in_cols + i);
    const A* xi = x.im(b * in_cols + i);
    for (int64_t r = 0; r < kOutBlock; ++r) {
      const A* gr = g.re(b * out_cols + o0 + r);
      const A* gi = g.im(b * out_cols + o0 + r);
#pragma omp simd
      for (int64_t k = 0; k < kModeBlock; ++k) {
        acc_re[r][k] = madd(xr[k], gr[k], madd(xi[k], gi[k], acc_re[r][k]));
        acc_im[r][k] = madd(xr[k], gi[k], madd(-xi[k], gr[k], acc_im[r][k]));
      }
    }
  }
  for (int64_t r = 0; r < kOutBlock; ++r) {
    A* re = grad_w.re(i * out_cols + o0 + r);
    A* im = grad_w.im(i * out_cols + o0 + r);
#pragma omp simd
    for (int64_t k = 0; k < kModeBlock; ++k) {
      re[k] = acc_re[r][k];
      im[k] = acc_im[r][k];
    }
  }
}

// Runs body(m0, count) over blocks of at most kModeBlock kept modes, each thread on an equal
// share of the modes: a 1-D layer keeps few modes (9 of a 1024-point grid with 16 modes), one
// block, which whole blocks would leave to one thread.
template <typename Body>
void parallel_mode_blocks(const ModeMixing& p, int num_threads, Body body) {
  const int64_t work = p.modes * p.batch * p.in_ch * p.out_ch;
  const int64_t threads = work >= kMixingParallelMin && num_threads > 1
                              ? std::min<int64_t>(num_threads, p.modes) : 1;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t end = p.modes * (id + 1) / n;
    for (int64_t m0 = p.modes * id / n; m0 < end; m0 += kModeBlock) {
      body(m0, std::min(kModeBlock, end - m0));
    }
  }
}

// An odd number of block rows at least `rows`: the products read rows that many apart (one row
// of each sample, or of each input channel), and with 64 or 32 rows of 64 bytes they would be
// 4 KiB apart, in one set of the L1 cache, which cannot hold the 8 or 16 lines of a product.
inline int64_t odd_rows(int64_t rows) { return rows | 1; }

template <typename T, typename A>
void run_mixing_forward(const ModeMixing& p, int num_threads) {
  const int64_t ci = p.in_ch, co = p.out_ch, batch = pad_to(p.batch, kBatchBlock);
  const int64_t x_cols = odd_rows(ci), w_cols = odd_rows(co);
  parallel_mode_blocks(p, num_threads, [&](int64_t m0, int64_t count) {
    const Block<A> x(0, batch * x_cols), w(1, ci * w_cols), y(2, batch * co);
    load_spectrum<T, A>(p.x, p.x_stride, p.batch, ci, m0, count, x, x_cols);
    load_weight<A>(p, m0, count, w, w_cols);
    for (int64_t b0 = 0; b0 < p.batch; b0 += kBatchBlock) {
      for (int64_t o = 0; o < co; ++o) {
        // y[b][o] = sum_i x[b][i] w[i][o]: w(t = i, j = o) is row i * w_cols + o
        batch_product<A, false>(x, x_cols, w, w_cols, 1, ci, b0, o, y, co);
      }
    }
    store_spectrum<T, A>(p.y, p.y_stride, p.batch, co, m0, count, y);
  });
}

template <typename T, typename A>
void run_mixing_backward(const ModeMixing& p, int num_threads) {
  const int64_t ci = p.in_ch, co = p.out_ch, batch = pad_to(p.batch, kBatchBlock);
  // g has whole blocks of kOutBlock outputs per sample for the weight gradient
  const int64_t x_cols = odd_rows(ci), g_cols = odd_rows(pad_to(co, kOutBlock));
  const int64_t w_cols = odd_rows(co);
  parallel_mode_blocks(p, num_threads, [&](int64_t m0, int64_t count) {
    const Block<A> x(0, batch * x_cols), g(1, batch * g_cols), w(2, ci * w_cols),
        grad_x(3, batch * ci);
    load_spectrum<T, A>(p.x, p.x_stride, p.batch, ci, m0, count, x, x_cols);
    load_spectrum<T, A>(p.y, p.y_stride, p.batch, co, m0, count, g, g_cols);
    load_weight<A>(p, m0, count, w, w_cols);
    for (int64_t b0 = 0; b0 < p.batch; b0 += kBatchBlock) {
      for (int64_t i = 0; i < ci; ++i) {
        // grad_x[b][i] = sum_o g[b][o] conj(w[i][o]): w(t = o, j = i) is row i * w_cols + o
        batch_product<A, true>(g, g_cols, w, 1, w_cols, co, b0, i, grad_x, ci);
      }
    }
    store_spectrum<T, A>(p.grad_x, p.x_stride, p.batch, ci, m0, count, grad_x);
    // the weight's block is read: its buffer takes the weight gradient, rows i * g_cols + o
    const Block<A> grad_w(2, ci * g_cols);
    for (int64_t i = 0; i < ci; ++i) {
      for (int64_t o0 = 0; o0 < co; o0 += kOutBlock) {
        weight_gradient(x, x_cols, g, g_cols, p.batch, i, o0, grad_w);
      }
    }
    store_weight<A>(p, m0, count, grad_w, g_cols);
  });
}

// A run-time storage as compile-time (storage, arithmetic) types: calls f(T{}, A{}).
template <typename F>
void with_mixing_types(MixingStorage storage, F f) {
  switch (storage) {
    case MixingStorage::kBFloat16:
      return f(bf16{}, float{});
    case MixingStorage::kFloat64:
      return f(double{}, double{});
    default:
      return f(float{}, float{});
  }
}

inline void dispatch_mixing_forward(const ModeMixing& args, int num_threads) {
  with_mixing_types(args.storage, [&](auto t, auto a) {
    run_mixing_forward<decltype(t), decltype(a)>(args, num_threads);
  });
}

inline void dispatch_mixing_backward(const ModeMixing& args, int num_threads) {
  with_mixing_types(args.storage, [&](auto t, auto a) {
    run_mixing_backward<decltype(t), decltype(a)>(args, num_threads);
  });
}

}  // namespace
}  // namespace nol_fast

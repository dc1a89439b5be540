// The Python module nol_fast._C: bindings of the compiled kernels.
//
// Tensors cross this boundary as addresses (int64) and element counts, packed by the Python
// wrappers in nol_fast/ops, which check devices, dtypes and layouts first. The module therefore
// includes no torch headers and works with any torch version. The GIL is released while a
// kernel runs.
//
// setup.py defines NOL_FAST_VERSION, and with CUDA NOL_FAST_WITH_CUDA and NOL_FAST_CUDA_ARCHS;
// the module exposes them as `build_info`, the record of how it was built.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "channel_mlp.h"
#include "darcy_residual.h"
#include "kernels_amx.h"
#include "mode_mixing.h"
#include "multi_tensor_optim.h"
#include "pointwise_epilogue.h"
#include "row_reduction.h"

#ifdef NOL_FAST_WITH_CUDA
#include <cuda_runtime_api.h>

extern "C" int nol_fast_multi_tensor_step_cuda(
    const int64_t* meta, const int64_t* chunks, int64_t n_chunks, int64_t block,
    const float* coefs, const float* grad_scale, const float* found_inf, float one_minus_beta1,
    float beta2, float one_minus_beta2, float eps, float weight_decay, int param_dtype,
    int grad_dtype, int flags, void* stream);
#endif

namespace py = pybind11;

namespace {

template <typename T>
T* pointer(int64_t address) {
  return reinterpret_cast<T*>(static_cast<intptr_t>(address));
}

void multi_tensor_step_cpu(const std::vector<int64_t>& table, int dtype, double lr,
                           double beta1, double beta2, double eps, double weight_decay,
                           bool decoupled, bool amsgrad, bool maximize, bool adabound,
                           double base_lr, double final_lr, double gamma, int64_t grad_scale,
                           int64_t found_inf, int num_threads) {
  if (table.size() % nol_fast::kTableColumns != 0) {
    throw std::invalid_argument("multi_tensor_step_cpu: the table must have rows of " +
                                std::to_string(nol_fast::kTableColumns) + " entries");
  }
  if (dtype != 0 && dtype != 1) {
    throw std::invalid_argument("multi_tensor_step_cpu: dtype must be 0 (float32) or 1 (float64)");
  }
  const nol_fast::StepHyper hyper{lr,        beta1,    beta2,    eps,     weight_decay,
                                  decoupled, amsgrad,  maximize, adabound, base_lr,
                                  final_lr,  gamma};
  py::gil_scoped_release release;
  nol_fast::multi_tensor_step_cpu(table, static_cast<nol_fast::ScalarType>(dtype), hyper,
                                  pointer<const float>(grad_scale),
                                  pointer<const float>(found_inf), num_threads);
}

void check_codes(int act, int skip, int storage, const char* name) {
  if (act < 0 || act > 4 || skip < 0 || skip > 2 || storage < 0 || storage > 1) {
    throw std::invalid_argument(std::string(name) + ": activation, skip or storage code out of "
                                "range");
  }
}

void epilogue_forward(int64_t rows, int64_t cols, int64_t y, int64_t bias, int64_t x,
                      int64_t gamma, int64_t act_grad, int64_t out, int act,
                      int skip, int storage, int num_threads) {
  check_codes(act, skip, storage, "epilogue_forward");
  if (act == 0 && act_grad != 0) {
    throw std::invalid_argument("epilogue_forward: no activation, so no act_grad to keep");
  }
  const nol_fast::EpilogueForward args{rows,
                                       cols,
                                       pointer<const void>(y),
                                       pointer<const float>(bias),
                                       pointer<const void>(x),
                                       pointer<const float>(gamma),
                                       pointer<void>(act_grad),
                                       pointer<void>(out),
                                       static_cast<nol_fast::Activation>(act),
                                       static_cast<nol_fast::SkipKind>(skip),
                                       static_cast<nol_fast::Storage>(storage)};
  py::gil_scoped_release release;
  nol_fast::epilogue_forward(args, num_threads);
}

void epilogue_backward(int64_t rows, int64_t cols, int64_t grad_out, int64_t act_grad,
                       int64_t grad_pre, int64_t grad_bias, int64_t x, int64_t gamma,
                       int64_t grad_gamma, int64_t grad_x, bool accumulate_x, int skip,
                       int storage, int num_threads) {
  check_codes(0, skip, storage, "epilogue_backward");
  const nol_fast::EpilogueBackward args{rows,
                                        cols,
                                        pointer<const void>(grad_out),
                                        pointer<const void>(act_grad),
                                        pointer<void>(grad_pre),
                                        pointer<float>(grad_bias),
                                        pointer<const void>(x),
                                        pointer<const float>(gamma),
                                        pointer<float>(grad_gamma),
                                        pointer<void>(grad_x),
                                        accumulate_x,
                                        static_cast<nol_fast::SkipKind>(skip),
                                        static_cast<nol_fast::Storage>(storage)};
  py::gil_scoped_release release;
  nol_fast::epilogue_backward(args, num_threads);
}

// The pointer tables of a channel MLP call, kept alive for the call.
struct MlpTables {
  std::vector<const float*> weights, biases;
  std::vector<void*> pres;
  std::vector<float*> grad_weights, grad_biases;
};

nol_fast::ChannelMlp channel_mlp_args(const std::vector<int64_t>& widths, int64_t rows, int64_t x,
                                      const std::vector<int64_t>& weights,
                                      const std::vector<int64_t>& biases,
                                      const std::vector<int64_t>& pres, int act, int storage,
                                      MlpTables& tables, const char* name) {
  check_codes(act, 0, storage, name);
  const size_t layers = weights.size();
  if (layers < 1 || widths.size() != layers + 1 || biases.size() != layers ||
      pres.size() != layers - 1) {
    throw std::invalid_argument(std::string(name) + ": need layers + 1 widths, one weight and "
                                "bias per layer and one pre-activation per hidden layer");
  }
  for (int64_t w : widths) {
    if (w < 1) throw std::invalid_argument(std::string(name) + ": widths must be positive");
  }
  for (size_t l = 0; l < layers; ++l) {
    tables.weights.push_back(pointer<const float>(weights[l]));
    tables.biases.push_back(pointer<const float>(biases[l]));
  }
  for (int64_t p : pres) tables.pres.push_back(pointer<void>(p));
  nol_fast::ChannelMlp args{};
  args.rows = rows;
  args.layers = static_cast<int64_t>(layers);
  args.widths = widths.data();
  args.x = pointer<const void>(x);
  args.weights = tables.weights.data();
  args.biases = tables.biases.data();
  args.pres = tables.pres.data();
  args.act = static_cast<nol_fast::Activation>(act);
  args.storage = static_cast<nol_fast::Storage>(storage);
  return args;
}

void channel_mlp_forward(int64_t rows, const std::vector<int64_t>& widths, int64_t x,
                         const std::vector<int64_t>& weights, const std::vector<int64_t>& biases,
                         const std::vector<int64_t>& pres, int64_t out, int act, int storage,
                         int num_threads) {
  MlpTables tables;
  nol_fast::ChannelMlp args = channel_mlp_args(widths, rows, x, weights, biases, pres, act,
                                               storage, tables, "channel_mlp_forward");
  args.out = pointer<void>(out);
  py::gil_scoped_release release;
  nol_fast::channel_mlp_forward(args, num_threads);
}

void channel_mlp_backward(int64_t rows, const std::vector<int64_t>& widths, int64_t grad_out,
                          int64_t x, const std::vector<int64_t>& weights,
                          const std::vector<int64_t>& biases, const std::vector<int64_t>& pres,
                          int64_t grad_x, const std::vector<int64_t>& grad_weights,
                          const std::vector<int64_t>& grad_biases, int act, int storage,
                          int num_threads) {
  MlpTables tables;
  nol_fast::ChannelMlp args = channel_mlp_args(widths, rows, x, weights, biases, pres, act,
                                               storage, tables, "channel_mlp_backward");
  if (grad_weights.size() != weights.size() || grad_biases.size() != weights.size()) {
    throw std::invalid_argument("channel_mlp_backward: need one gradient per weight and bias");
  }
  for (int64_t p : grad_weights) tables.grad_weights.push_back(pointer<float>(p));
  for (int64_t p : grad_biases) tables.grad_biases.push_back(pointer<float>(p));
  args.grad_out = pointer<const void>(grad_out);
  args.grad_x = pointer<void>(grad_x);
  args.grad_weights = tables.grad_weights.data();
  args.grad_biases = tables.grad_biases.data();
  py::gil_scoped_release release;
  nol_fast::channel_mlp_backward(args, num_threads);
}

void reduce_rows(int64_t rows, int64_t m, int64_t n, int64_t a, int64_t lda, int64_t b,
                 int64_t ldb, int64_t out, int storage, int num_threads) {
  if (storage < 0 || storage > 1) {
    throw std::invalid_argument("reduce_rows: storage code out of range");
  }
  if (rows < 0 || m < 1 || n < 1 || lda < m || ldb < n) {
    throw std::invalid_argument("reduce_rows: bad shape or row stride");
  }
  const nol_fast::RowReduction args{rows,         m, n, pointer<const void>(a), lda,
                                    pointer<const void>(b), ldb, pointer<float>(out),
                                    static_cast<nol_fast::Storage>(storage)};
  py::gil_scoped_release release;
  nol_fast::reduce_rows(args, num_threads);
}

void rows_matmul(int64_t rows, int64_t k, int64_t n, int64_t a, int64_t lda, int64_t w,
                 int64_t w_stride_k, int64_t w_stride_n, int64_t out, int64_t ldo,
                 bool accumulate, int num_threads) {
  if (!nol_fast::amx_enabled()) {
    throw std::runtime_error("rows_matmul: AMX tiles are not available or turned off");
  }
  if (rows < 0 || k < 1 || n < 1 || lda < k || ldo < n) {
    throw std::invalid_argument("rows_matmul: bad shape or row stride");
  }
  const nol_fast::RowsMatmul args{rows, k, n, pointer<const void>(a), lda,
                                  pointer<const float>(w), w_stride_k, w_stride_n,
                                  pointer<void>(out), ldo, accumulate};
  py::gil_scoped_release release;
  nol_fast::detail::rows_matmul_amx(args, num_threads);
}

void shared_matmul(int64_t lead, int64_t rows, int64_t cols, int64_t rest, int64_t matrix,
                   int64_t t, int64_t out, bool accumulate, int num_threads) {
  if (!nol_fast::amx_enabled()) {
    throw std::runtime_error("shared_matmul: AMX tiles are not available or turned off");
  }
  if (lead < 0 || rows < 1 || cols < 1 || rest < 1) {
    throw std::invalid_argument("shared_matmul: bad shape");
  }
  const nol_fast::SharedMatmul args{lead, rows, cols, rest, pointer<const void>(matrix),
                                    pointer<const void>(t), pointer<void>(out), accumulate};
  py::gil_scoped_release release;
  nol_fast::detail::shared_matmul_amx(args, num_threads);
}

nol_fast::ModeMixing mode_mixing_args(int64_t batch, int64_t modes, int64_t in_ch,
                                      int64_t out_ch, int64_t x,
                                      const std::vector<int64_t>& x_strides, int64_t y,
                                      const std::vector<int64_t>& y_strides, int64_t weight,
                                      int64_t w_modes, int64_t w_offset, int storage,
                                      const char* name) {
  if (storage < 0 || storage > 2) {
    throw std::invalid_argument(std::string(name) + ": storage code out of range");
  }
  if (batch < 0 || modes < 0 || in_ch < 1 || out_ch < 1 || w_modes < 1 ||
      x_strides.size() != 4 || y_strides.size() != 4) {
    throw std::invalid_argument(std::string(name) + ": bad sizes or strides");
  }
  nol_fast::ModeMixing args{};
  args.batch = batch;
  args.modes = modes;
  args.in_ch = in_ch;
  args.out_ch = out_ch;
  args.x = pointer<const void>(x);
  args.y = pointer<void>(y);
  for (int d = 0; d < 4; ++d) {
    args.x_stride[d] = x_strides[d];
    args.y_stride[d] = y_strides[d];
  }
  args.weight = pointer<const void>(weight);
  args.w_modes = w_modes;
  args.w_offset = pointer<const int64_t>(w_offset);
  args.storage = static_cast<nol_fast::MixingStorage>(storage);
  return args;
}

void mode_mixing_forward(int64_t batch, int64_t modes, int64_t in_ch, int64_t out_ch, int64_t x,
                         const std::vector<int64_t>& x_strides, int64_t y,
                         const std::vector<int64_t>& y_strides, int64_t weight, int64_t w_modes,
                         int64_t w_offset, int storage, int num_threads) {
  const nol_fast::ModeMixing args =
      mode_mixing_args(batch, modes, in_ch, out_ch, x, x_strides, y, y_strides, weight, w_modes,
                       w_offset, storage, "mode_mixing_forward");
  py::gil_scoped_release release;
  nol_fast::mode_mixing_forward(args, num_threads);
}

void mode_mixing_backward(int64_t batch, int64_t modes, int64_t in_ch, int64_t out_ch,
                          int64_t x, const std::vector<int64_t>& x_strides, int64_t grad_y,
                          const std::vector<int64_t>& y_strides, int64_t weight, int64_t w_modes,
                          int64_t w_offset, int64_t grad_x, int64_t grad_weight, int storage,
                          int num_threads) {
  nol_fast::ModeMixing args =
      mode_mixing_args(batch, modes, in_ch, out_ch, x, x_strides, grad_y, y_strides, weight,
                       w_modes, w_offset, storage, "mode_mixing_backward");
  args.grad_x = pointer<void>(grad_x);
  args.grad_weight = pointer<void>(grad_weight);
  py::gil_scoped_release release;
  nol_fast::mode_mixing_backward(args, num_threads);
}

nol_fast::DarcyGrid darcy_grid(int64_t planes, int64_t nx, int64_t ny, double hx, double hy,
                               bool periodic_x, bool periodic_y, int radius,
                               const std::vector<double>& table) {
  return nol_fast::DarcyGrid{planes, nx, ny, hx, hy, periodic_x, periodic_y, radius, table};
}

nol_fast::ScalarType real_dtype(int dtype, const char* name) {
  if (dtype != 0 && dtype != 1) {
    throw std::invalid_argument(std::string(name) + ": dtype must be 0 (float32) or 1 (float64)");
  }
  return static_cast<nol_fast::ScalarType>(dtype);
}

void darcy_residual_forward_cpu(int64_t planes, int64_t nx, int64_t ny, double hx, double hy,
                                bool periodic_x, bool periodic_y, int radius,
                                const std::vector<double>& table, int dtype, int64_t u,
                                int64_t a, int64_t f, double f_value, int64_t r, int64_t loss,
                                int num_threads) {
  const auto grid = darcy_grid(planes, nx, ny, hx, hy, periodic_x, periodic_y, radius, table);
  const auto type = real_dtype(dtype, "darcy_residual_forward_cpu");
  py::gil_scoped_release release;
  nol_fast::darcy_residual_forward_cpu(grid, type, pointer<const void>(u), pointer<const void>(a),
                                       pointer<const void>(f), f_value, pointer<void>(r),
                                       pointer<void>(loss), num_threads);
}

void darcy_residual_backward_cpu(int64_t planes, int64_t nx, int64_t ny, double hx, double hy,
                                 bool periodic_x, bool periodic_y, int radius,
                                 const std::vector<double>& table, int dtype, int64_t grad_loss,
                                 int64_t r, int64_t u, int64_t a, int64_t grad_u, int64_t grad_a,
                                 int64_t grad_f, int num_threads) {
  const auto grid = darcy_grid(planes, nx, ny, hx, hy, periodic_x, periodic_y, radius, table);
  const auto type = real_dtype(dtype, "darcy_residual_backward_cpu");
  py::gil_scoped_release release;
  nol_fast::darcy_residual_backward_cpu(grid, type, pointer<const void>(grad_loss),
                                        pointer<const void>(r), pointer<const void>(u),
                                        pointer<const void>(a), pointer<void>(grad_u),
                                        pointer<void>(grad_a), pointer<void>(grad_f),
                                        num_threads);
}

#ifdef NOL_FAST_WITH_CUDA
void multi_tensor_step_cuda(int64_t meta, int64_t chunks, int64_t n_chunks, int64_t block,
                            int64_t coefs, int64_t grad_scale, int64_t found_inf,
                            float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                            float weight_decay, int param_dtype, int grad_dtype, int flags,
                            int64_t stream) {
  const int status = nol_fast_multi_tensor_step_cuda(
      pointer<const int64_t>(meta), pointer<const int64_t>(chunks), n_chunks, block,
      pointer<const float>(coefs), pointer<const float>(grad_scale),
      pointer<const float>(found_inf), one_minus_beta1, beta2, one_minus_beta2, eps,
      weight_decay, param_dtype, grad_dtype, flags, pointer<void>(stream));
  if (status != 0) {
    throw std::runtime_error(std::string("multi_tensor_step_cuda: ") +
                             cudaGetErrorString(static_cast<cudaError_t>(status)));
  }
}

// "13.0" for the CUDA version number 13000 (of CUDART_VERSION or cudaDriverGetVersion).
std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Why the CUDA kernels cannot run in this process ("" when they can): a driver older than the
// runtime linked in, no driver, or no device. It initialises the CUDA runtime, so the Python
// side asks only when CUDA tensors are about to be updated (or a report asks).
std::string cuda_runtime_error() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status == cudaSuccess && devices > 0) {
    return "";
  }
  int driver = 0;
  cudaDriverGetVersion(&driver);
  const std::string driver_text = driver == 0
                                      ? "no CUDA driver found"
                                      : "the driver supports CUDA " + cuda_version_text(driver);
  const std::string what = status == cudaSuccess ? "no CUDA device" : cudaGetErrorString(status);
  return what + " (nol_fast._C was built with CUDA " + cuda_version_text(CUDART_VERSION) + "; " +
         driver_text + ")";
}
#endif

py::dict build_info() {
  py::dict info;
  info["version"] = NOL_FAST_VERSION;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
#ifdef NOL_FAST_WITH_CUDA
  info["cuda"] = cuda_version_text(CUDART_VERSION);
  info["cuda_archs"] = NOL_FAST_CUDA_ARCHS;
#else
  info["cuda"] = py::none();
  info["cuda_archs"] = "";
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Compiled kernels of nol_fast (CPU, and CUDA when built with it).";
  m.attr("build_info") = build_info();
  m.attr("table_columns") = nol_fast::kTableColumns;
  m.def("multi_tensor_step_cpu", &multi_tensor_step_cpu,
        "One Adam/AdamW/AdaBound step over the tensors of a table (see "
        "nol_fast.ops.cpu.optim).",
        py::arg("table"), py::arg("dtype"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"), py::arg("amsgrad"),
        py::arg("maximize"), py::arg("adabound"), py::arg("base_lr"), py::arg("final_lr"),
        py::arg("gamma"), py::arg("grad_scale"), py::arg("found_inf"), py::arg("num_threads"));
  m.def("epilogue_forward", &epilogue_forward,
        "out = act(y + bias + skip(x)), keeping act', over a "
        "channels-last (rows, cols) matrix (see nol_fast.ops.pointwise.epilogue).",
        py::arg("rows"), py::arg("cols"), py::arg("y"), py::arg("bias"), py::arg("x"),
        py::arg("gamma"), py::arg("act_grad"), py::arg("out"), py::arg("act"),
        py::arg("skip"), py::arg("storage"), py::arg("num_threads"));
  m.def("epilogue_backward", &epilogue_backward,
        "Gradient of epilogue_forward: grad_pre, per-channel sums and the skip gradient (see "
        "nol_fast.ops.pointwise.epilogue).",
        py::arg("rows"), py::arg("cols"), py::arg("grad_out"), py::arg("act_grad"),
        py::arg("grad_pre"), py::arg("grad_bias"), py::arg("x"), py::arg("gamma"),
        py::arg("grad_gamma"), py::arg("grad_x"), py::arg("accumulate_x"), py::arg("skip"),
        py::arg("storage"), py::arg("num_threads"));
  m.def("channel_mlp_forward", &channel_mlp_forward,
        "The channel MLP over a channels-last (rows, channels) matrix, tile by tile through all "
        "layers, keeping the hidden pre-activations (see nol_fast.ops.pointwise.cpu).",
        py::arg("rows"), py::arg("widths"), py::arg("x"), py::arg("weights"), py::arg("biases"),
        py::arg("pres"), py::arg("out"), py::arg("act"), py::arg("storage"),
        py::arg("num_threads"));
  m.def("channel_mlp_backward", &channel_mlp_backward,
        "Gradients of channel_mlp_forward, tile by tile from the output gradient back (see "
        "nol_fast.ops.pointwise.cpu).",
        py::arg("rows"), py::arg("widths"), py::arg("grad_out"), py::arg("x"),
        py::arg("weights"), py::arg("biases"), py::arg("pres"), py::arg("grad_x"),
        py::arg("grad_weights"), py::arg("grad_biases"), py::arg("act"), py::arg("storage"),
        py::arg("num_threads"));
  m.def("reduce_rows", &reduce_rows,
        "out = a^T b in float32 for (rows, m) and (rows, n) matrices of float32 or bfloat16 "
        "(see nol_fast.ops.pointwise.row_reduction).",
        py::arg("rows"), py::arg("m"), py::arg("n"), py::arg("a"), py::arg("lda"), py::arg("b"),
        py::arg("ldb"), py::arg("out"), py::arg("storage"), py::arg("num_threads"));
  m.def("rows_matmul", &rows_matmul,
        "out (=|+=) a @ w on AMX tiles for bfloat16 (rows, k) a and out and a float32 (k, n) "
        "w read through strides (see nol_fast.ops.pointwise.cpu.matmul_rows).",
        py::arg("rows"), py::arg("k"), py::arg("n"), py::arg("a"), py::arg("lda"), py::arg("w"),
        py::arg("w_stride_k"), py::arg("w_stride_n"), py::arg("out"), py::arg("ldo"),
        py::arg("accumulate"), py::arg("num_threads"));
  m.def("shared_matmul", &shared_matmul,
        "out[l] (=|+=) matrix @ t[l] on AMX tiles for contiguous bfloat16 operands (see "
        "nol_fast.ops.spectral_conv.cpu).",
        py::arg("lead"), py::arg("rows"), py::arg("cols"), py::arg("rest"), py::arg("matrix"),
        py::arg("t"), py::arg("out"), py::arg("accumulate"), py::arg("num_threads"));
  m.def("amx_available", &nol_fast::amx_available,
        "Whether this CPU and OS let the bfloat16 kernels run their products on AMX tiles.");
  m.def("amx_enabled", &nol_fast::amx_enabled,
        "Whether the bfloat16 kernels use AMX now: available and not turned off.");
  m.def("set_amx_enabled", &nol_fast::set_amx_enabled,
        "Let the bfloat16 kernels use AMX where available (the default), or not: they then run "
        "their AVX-512 FMA loops, as on CPUs without AMX.",
        py::arg("enabled"));
  m.def("mode_mixing_forward", &mode_mixing_forward,
        "y = x @ W on every kept Fourier mode, complex, for spectra given by strides (see "
        "nol_fast.ops.spectral_conv.mixing).",
        py::arg("batch"), py::arg("modes"), py::arg("in_ch"), py::arg("out_ch"), py::arg("x"),
        py::arg("x_strides"), py::arg("y"), py::arg("y_strides"), py::arg("weight"),
        py::arg("w_modes"), py::arg("w_offset"), py::arg("storage"), py::arg("num_threads"));
  m.def("mode_mixing_backward", &mode_mixing_backward,
        "Gradients of mode_mixing_forward: the input spectrum's, and the weight's on the kept "
        "modes (see nol_fast.ops.spectral_conv.mixing).",
        py::arg("batch"), py::arg("modes"), py::arg("in_ch"), py::arg("out_ch"), py::arg("x"),
        py::arg("x_strides"), py::arg("grad_y"), py::arg("y_strides"), py::arg("weight"),
        py::arg("w_modes"), py::arg("w_offset"), py::arg("grad_x"), py::arg("grad_weight"),
        py::arg("storage"), py::arg("num_threads"));
  m.def("darcy_residual_forward_cpu", &darcy_residual_forward_cpu,
        "The Darcy residual -div(a grad u) - f on 2-D planes and its mean square (see "
        "nol_fast.ops.darcy_residual.cpu).",
        py::arg("planes"), py::arg("nx"), py::arg("ny"), py::arg("hx"), py::arg("hy"),
        py::arg("periodic_x"), py::arg("periodic_y"), py::arg("radius"), py::arg("table"),
        py::arg("dtype"), py::arg("u"), py::arg("a"), py::arg("f"), py::arg("f_value"),
        py::arg("r"), py::arg("loss"), py::arg("num_threads"));
  m.def("darcy_residual_backward_cpu", &darcy_residual_backward_cpu,
        "Gradients of the Darcy residual's mean square in u, a and f.",
        py::arg("planes"), py::arg("nx"), py::arg("ny"), py::arg("hx"), py::arg("hy"),
        py::arg("periodic_x"), py::arg("periodic_y"), py::arg("radius"), py::arg("table"),
        py::arg("dtype"), py::arg("grad_loss"), py::arg("r"), py::arg("u"), py::arg("a"),
        py::arg("grad_u"), py::arg("grad_a"), py::arg("grad_f"), py::arg("num_threads"));
#ifdef NOL_FAST_WITH_CUDA
  m.attr("has_cuda") = true;
  m.def("multi_tensor_step_cuda", &multi_tensor_step_cuda,
        "One Adam/AdamW/AdaBound step over the tables of nol_fast.ops.triton.optim, on a "
        "stream.",
        py::arg("meta"), py::arg("chunks"), py::arg("n_chunks"), py::arg("block"),
        py::arg("coefs"), py::arg("grad_scale"), py::arg("found_inf"),
        py::arg("one_minus_beta1"), py::arg("beta2"), py::arg("one_minus_beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("param_dtype"), py::arg("grad_dtype"), py::arg("flags"),
        py::arg("stream"));
  m.def("cuda_runtime_error", &cuda_runtime_error,
        "Why the CUDA kernels cannot run here, or '' when they can.");
#else
  m.attr("has_cuda") = false;
#endif
}

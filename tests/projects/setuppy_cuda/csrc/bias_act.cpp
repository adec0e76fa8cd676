// biasact::bias_relu(x, bias) = relu(x + bias), bias broadcast along x's last dimension.
// The schema and the CPU kernel; bias_act_cuda.cu adds the CUDA kernel when it is built.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace biasact {

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() >= 1, "bias_relu: x must have at least one dimension");
  TORCH_CHECK(bias.dim() == 1, "bias_relu: bias must be 1-D, got ", bias.dim(), "-D");
  TORCH_CHECK(x.size(-1) == bias.size(0), "bias_relu: x's last dimension (", x.size(-1),
              ") differs from bias's size (", bias.size(0), ")");
  TORCH_CHECK(x.scalar_type() == bias.scalar_type(), "bias_relu: x and bias differ in dtype");
}

static at::Tensor bias_relu_cpu(const at::Tensor& x_in, const at::Tensor& bias_in) {
  check_inputs(x_in, bias_in);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor bias = bias_in.contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t cols = bias.numel();
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_relu_cpu", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    const scalar_t* pb = bias.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const scalar_t v = px[r * cols + c] + pb[c];
        po[r * cols + c] = v > scalar_t(0) ? v : scalar_t(0);
      }
    }
  });
  return out;
}

}  // namespace biasact

TORCH_LIBRARY(biasact, m) { m.def("bias_relu(Tensor x, Tensor bias) -> Tensor"); }

TORCH_LIBRARY_IMPL(biasact, CPU, m) { m.impl("bias_relu", &biasact::bias_relu_cpu); }

// rmsnorm_cmake::rms_norm(x, weight, eps) = x / sqrt(mean(x^2, -1) + eps) * weight
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cmath>

namespace {

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  TORCH_CHECK(x_in.dim() >= 1, "rms_norm: x must have at least one dimension");
  TORCH_CHECK(weight_in.dim() == 1 && weight_in.size(0) == x_in.size(-1),
              "rms_norm: weight must be 1-D with x's last dimension (", x_in.size(-1), ")");
  TORCH_CHECK(eps >= 0.0, "rms_norm: eps must not be negative");
  const at::Tensor x = x_in.contiguous();
  const at::Tensor weight = weight_in.to(x.scalar_type()).contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_cpu", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    const scalar_t* pw = weight.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* row = px + r * cols;
      double sum_sq = 0.0;
      for (int64_t c = 0; c < cols; ++c) sum_sq += double(row[c]) * double(row[c]);
      const double inv = 1.0 / std::sqrt(sum_sq / double(cols) + eps);
      for (int64_t c = 0; c < cols; ++c) po[r * cols + c] = scalar_t(row[c] * inv) * pw[c];
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(rmsnorm_cmake, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps=1e-6) -> Tensor");
}

TORCH_LIBRARY_IMPL(rmsnorm_cmake, CPU, m) { m.impl("rms_norm", &rms_norm_cpu); }

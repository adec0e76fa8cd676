// pairwise_ext._C: squared Euclidean distances between the rows of two matrices, exposed
// through pybind11 (PYBIND11_MODULE) like most CppExtension projects.
#include <torch/extension.h>
#include <torch/version.h>

namespace {

torch::Tensor pairwise_sq_dist(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  TORCH_CHECK(a_in.dim() == 2 && b_in.dim() == 2, "pairwise_sq_dist: inputs must be 2-D");
  TORCH_CHECK(a_in.size(1) == b_in.size(1), "pairwise_sq_dist: inputs differ in columns (",
              a_in.size(1), " vs ", b_in.size(1), ")");
  TORCH_CHECK(a_in.scalar_type() == b_in.scalar_type(), "pairwise_sq_dist: dtypes differ");
  TORCH_CHECK(a_in.device().is_cpu() && b_in.device().is_cpu(),
              "pairwise_sq_dist: CPU tensors only");
  const auto a = a_in.contiguous();
  const auto b = b_in.contiguous();
  const int64_t n = a.size(0), m = b.size(0), d = a.size(1);
  auto out = torch::empty({n, m}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "pairwise_sq_dist", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < m; ++j) {
          scalar_t acc = 0;
          for (int64_t k = 0; k < d; ++k) {
            const scalar_t diff = pa[i * d + k] - pb[j * d + k];
            acc += diff * diff;
          }
          po[i * m + j] = acc;
        }
      }
    });
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pairwise squared distances";
  m.def("pairwise_sq_dist", &pairwise_sq_dist, "squared distances between rows of a and b",
        py::arg("a"), py::arg("b"));
  m.attr("TORCH_VERSION") = TORCH_VERSION;
}

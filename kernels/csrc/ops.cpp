// Operator schemas for the compat_kernels namespace. Every op is functional
// (no aliasing or mutation), which keeps the fake impls and opcheck simple.

#include <torch/library.h>

TORCH_LIBRARY(compat_kernels, m) {
  // Tells torch where the Python fake (meta) impls live, so tracing can import
  // them even if the library was loaded without `import compat_kernels`.
  m.set_python_module("compat_kernels._fake");

  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def(
      "fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps)"
      " -> (Tensor, Tensor)");
  m.def("silu_and_mul(Tensor x) -> Tensor");
  m.def(
      "rotary_embedding(Tensor positions, Tensor query, Tensor key,"
      " Tensor cos_sin_cache, int head_size, bool is_neox) -> (Tensor, Tensor)");
}

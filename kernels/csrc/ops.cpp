// Operator schemas for the compat_kernels namespace. The default overload of
// every op is functional (no aliasing or mutation), which keeps the fake impls
// and opcheck simple. Each also has an `.out` overload, in ATen's convention,
// that writes into caller-provided tensors: for callers that manage their own
// buffers, and for tests that poison the outputs first to catch elements a
// kernel never writes. The `.out` overloads are for eager mode.

#include <torch/library.h>

TORCH_LIBRARY(compat_kernels, m) {
  // Tells torch where the Python fake (meta) impls live, so tracing can import
  // them even if the library was loaded without `import compat_kernels`.
  m.set_python_module("compat_kernels._fake");

  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def(
      "rms_norm.out(Tensor x, Tensor weight, float eps, *, Tensor(a!) out)"
      " -> Tensor(a!)");
  m.def(
      "fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps)"
      " -> (Tensor, Tensor)");
  m.def(
      "fused_add_rms_norm.out(Tensor x, Tensor residual, Tensor weight,"
      " float eps, *, Tensor(a!) out, Tensor(b!) sum) -> (Tensor(a!), Tensor(b!))");
  m.def("silu_and_mul(Tensor x) -> Tensor");
  m.def("silu_and_mul.out(Tensor x, *, Tensor(a!) out) -> Tensor(a!)");
  m.def(
      "rotary_embedding(Tensor positions, Tensor query, Tensor key,"
      " Tensor cos_sin_cache, int head_size, bool is_neox) -> (Tensor, Tensor)");
  m.def(
      "rotary_embedding.out(Tensor positions, Tensor query, Tensor key,"
      " Tensor cos_sin_cache, int head_size, bool is_neox, *,"
      " Tensor(a!) query_out, Tensor(b!) key_out) -> (Tensor(a!), Tensor(b!))");
}

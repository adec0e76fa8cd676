// CPU implementations of the compat_kernels ops: validate, allocate outputs,
// then run the kernel table for the tensor dtype and this CPU's ISA.

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../checks.h"
#include "../functional.h"
#include "kernels.h"

namespace compat_kernels::cpu {
namespace {

// Rows of the [..., n] view of a dense tensor whose last dimension is n > 0.
int64_t rows_of(const at::Tensor& t) {
  return t.numel() / t.size(-1);
}

at::Tensor& rms_norm_out(
    const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& out) {
  check_rms_norm(x, weight);
  check_out("rms_norm", "out", out, x, x.sizes());
  COMPAT_KERNELS_DISPATCH_FLOATING(x.scalar_type(), "compat_kernels::rms_norm", [&] {
    kernels<scalar_t>().rms_norm(
        x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), rows_of(x), x.size(-1),
        static_cast<float>(eps));
  });
  return out;
}


std::tuple<at::Tensor&, at::Tensor&> fused_add_rms_norm_out(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight,
    double eps,
    at::Tensor& out,
    at::Tensor& sum) {
  check_fused_add_rms_norm(x, residual, weight);
  check_out("fused_add_rms_norm", "out", out, x, x.sizes());
  check_out("fused_add_rms_norm", "sum", sum, x, x.sizes());
  COMPAT_KERNELS_DISPATCH_FLOATING(x.scalar_type(), "compat_kernels::fused_add_rms_norm", [&] {
    kernels<scalar_t>().fused_add_rms_norm(
        x.const_data_ptr<scalar_t>(), residual.const_data_ptr<scalar_t>(),
        weight.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        sum.mutable_data_ptr<scalar_t>(), rows_of(x), x.size(-1),
        static_cast<float>(eps));
  });
  return {out, sum};
}


at::Tensor& silu_and_mul_out(const at::Tensor& x, at::Tensor& out) {
  check_silu_and_mul(x);
  check_out("silu_and_mul", "out", out, x, silu_and_mul_shape(x));
  COMPAT_KERNELS_DISPATCH_FLOATING(x.scalar_type(), "compat_kernels::silu_and_mul", [&] {
    kernels<scalar_t>().silu_and_mul(
        x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        rows_of(x), out.size(-1));
  });
  return out;
}


std::tuple<at::Tensor&, at::Tensor&> rotary_embedding_out(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size,
    bool is_neox,
    at::Tensor& query_out,
    at::Tensor& key_out) {
  check_rotary_embedding(positions, query, key, cos_sin_cache, head_size);
  check_out("rotary_embedding", "query_out", query_out, query, query.sizes());
  check_out("rotary_embedding", "key_out", key_out, key, key.sizes());
  const int64_t num_tokens = positions.size(0);
  if (num_tokens == 0) {
    return {query_out, key_out};
  }
  const RotaryShape shape =
      rotary_shape(positions, query, key, cos_sin_cache, head_size, is_neox);
  COMPAT_KERNELS_DISPATCH_FLOATING(query.scalar_type(), "compat_kernels::rotary_embedding", [&] {
    kernels<scalar_t>().rotary_embedding(
        positions.const_data_ptr<int64_t>(), query.const_data_ptr<scalar_t>(),
        key.const_data_ptr<scalar_t>(), cos_sin_cache.const_data_ptr<scalar_t>(),
        query_out.mutable_data_ptr<scalar_t>(), key_out.mutable_data_ptr<scalar_t>(),
        shape);
  });
  return {query_out, key_out};
}


} // namespace
} // namespace compat_kernels::cpu

TORCH_LIBRARY_IMPL(compat_kernels, CPU, m) {
  namespace fn = compat_kernels::functional;
  using namespace compat_kernels::cpu;
  m.impl("rms_norm", &fn::rms_norm<&rms_norm_out>);
  m.impl("fused_add_rms_norm", &fn::fused_add_rms_norm<&fused_add_rms_norm_out>);
  m.impl("silu_and_mul", &fn::silu_and_mul<&silu_and_mul_out>);
  m.impl("rotary_embedding", &fn::rotary_embedding<&rotary_embedding_out>);
  m.impl("rms_norm.out", &rms_norm_out);
  m.impl("fused_add_rms_norm.out", &fused_add_rms_norm_out);
  m.impl("silu_and_mul.out", &silu_and_mul_out);
  m.impl("rotary_embedding.out", &rotary_embedding_out);
}

// Introspection, not a tensor op: which ISA build the CPU kernels run with.
TORCH_LIBRARY_FRAGMENT(compat_kernels, m) {
  m.def("cpu_capability() -> str", &compat_kernels::cpu::capability);
}

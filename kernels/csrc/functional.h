#pragma once

// The functional ops, written once for every backend: allocate the outputs and
// call that backend's `.out` op, which validates and computes. Each backend
// registers e.g. `&functional::rms_norm<&rms_norm_out>`.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <tuple>

#include "checks.h"

namespace compat_kernels::functional {

using RmsNormOut = at::Tensor& (*)(const at::Tensor&, const at::Tensor&, double, at::Tensor&);
using FusedAddRmsNormOut = std::tuple<at::Tensor&, at::Tensor&> (*)(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, double, at::Tensor&, at::Tensor&);
using SiluAndMulOut = at::Tensor& (*)(const at::Tensor&, at::Tensor&);
using RotaryEmbeddingOut = std::tuple<at::Tensor&, at::Tensor&> (*)(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool,
    at::Tensor&, at::Tensor&);

template <RmsNormOut Out>
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor out = at::empty_like(x);
  return Out(x, weight, eps, out);
}

template <FusedAddRmsNormOut Out>
std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight,
    double eps) {
  at::Tensor out = at::empty_like(x);
  at::Tensor sum = at::empty_like(x);
  Out(x, residual, weight, eps, out, sum);
  return {out, sum};
}

template <SiluAndMulOut Out>
at::Tensor silu_and_mul(const at::Tensor& x) {
  check_silu_and_mul(x); // the output shape needs a valid x
  at::Tensor out = at::empty(silu_and_mul_shape(x), x.options());
  return Out(x, out);
}

template <RotaryEmbeddingOut Out>
std::tuple<at::Tensor, at::Tensor> rotary_embedding(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size,
    bool is_neox) {
  at::Tensor query_out = at::empty_like(query);
  at::Tensor key_out = at::empty_like(key);
  Out(positions, query, key, cos_sin_cache, head_size, is_neox, query_out, key_out);
  return {query_out, key_out};
}

} // namespace compat_kernels::functional

#pragma once

// Input validation shared by every backend, so CPU and (later) CUDA kernels
// reject exactly the same inputs with exactly the same messages.

#include <ATen/core/Tensor.h>

namespace compat_kernels {

void check_rms_norm(const at::Tensor& x, const at::Tensor& weight);

void check_fused_add_rms_norm(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight);

void check_silu_and_mul(const at::Tensor& x);

void check_rotary_embedding(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size);

} // namespace compat_kernels

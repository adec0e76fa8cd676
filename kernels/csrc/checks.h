#pragma once

// Input validation shared by every backend, so CPU and (later) CUDA kernels
// reject exactly the same inputs with exactly the same messages.

#include <ATen/core/Tensor.h>

#include <vector>

#include "rotary_shape.h"

namespace compat_kernels {

void check_rms_norm(const at::Tensor& x, const at::Tensor& weight);

void check_fused_add_rms_norm(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight);

void check_silu_and_mul(const at::Tensor& x);

// The shape silu_and_mul produces for a (checked) x: the last dimension halved.
std::vector<int64_t> silu_and_mul_shape(const at::Tensor& x);

void check_rotary_embedding(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size);

// The geometry of a checked rotary_embedding call with at least one token.
RotaryShape rotary_shape(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size,
    bool is_neox);

// For the `.out` overloads: `out` must be a dense tensor of `like`'s dtype and
// device with exactly the shape the op produces (no resizing: a caller's
// buffer of the wrong size is a bug, not something to paper over).
void check_out(
    const char* op,
    const char* name,
    const at::Tensor& out,
    const at::Tensor& like,
    at::IntArrayRef sizes);

} // namespace compat_kernels

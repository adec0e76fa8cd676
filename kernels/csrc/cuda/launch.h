#pragma once

// The boundary between the op wrappers (ops_cuda.cpp, compiled by the host
// compiler with torch's headers) and the kernels (kernels.cu, compiled by nvcc
// with CUDA's headers only). Keeping ATen out of the .cu file keeps nvcc's
// share of the build short. Pointers are device pointers of `dtype` elements;
// tensors are dense and row-major; every launch goes on `stream`.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../rotary_shape.h"

namespace compat_kernels::cuda {

enum class DType { kFloat32, kBFloat16, kFloat16 };

using compat_kernels::RotaryShape;

// Each returns the launch's error (cudaSuccess when it was queued).
cudaError_t launch_rms_norm(
    DType dtype, const void* x, const void* weight, void* out,
    int64_t rows, int64_t n, float eps, cudaStream_t stream);

cudaError_t launch_fused_add_rms_norm(
    DType dtype, const void* x, const void* residual, const void* weight,
    void* out, void* sum, int64_t rows, int64_t n, float eps, cudaStream_t stream);

// x is rows x 2d, out is rows x d.
cudaError_t launch_silu_and_mul(
    DType dtype, const void* x, void* out, int64_t rows, int64_t d, cudaStream_t stream);

// A position outside [0, max_position) cannot be reported from the device
// without a synchronisation; that token's outputs are filled with NaN instead,
// so the mistake shows rather than passing as plausible numbers.
cudaError_t launch_rotary_embedding(
    DType dtype, const int64_t* positions, const void* query, const void* key,
    const void* cos_sin_cache, void* query_out, void* key_out,
    const RotaryShape& shape, cudaStream_t stream);

} // namespace compat_kernels::cuda

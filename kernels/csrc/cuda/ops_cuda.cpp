// CUDA implementations of the compat_kernels ops: validate (with the checks
// the CPU backend uses, so both reject the same inputs with the same words),
// allocate outputs, then launch the kernels of kernels.cu on the current
// stream of the inputs' device.

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "../checks.h"
#include "../functional.h"
#include "launch.h"

namespace compat_kernels::cuda {
namespace {

// Blocks go in gridDim.x; the cos/sin row goes in shared memory.
constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxRotDim = 48 * 1024 / sizeof(float);

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kHalf:
      return DType::kFloat16;
    default:
      TORCH_CHECK(false, "compat_kernels: no CUDA kernel for dtype ", t.scalar_type());
  }
}

int64_t rows_of(const char* op, const at::Tensor& t) {
  const int64_t rows = t.numel() / t.size(-1);
  TORCH_CHECK(
      rows <= kMaxBlocks, op, ": ", rows, " rows exceed the CUDA grid limit of ", kMaxBlocks);
  return rows;
}

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

void check_launched(const char* op, cudaError_t error) {
  TORCH_CHECK(
      error == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(error));
}

at::Tensor& rms_norm_out(
    const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& out) {
  constexpr const char* op = "rms_norm";
  check_rms_norm(x, weight);
  check_out(op, "out", out, x, x.sizes());
  const int64_t rows = rows_of(op, x);
  if (rows == 0) {
    return out;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  check_launched(op, launch_rms_norm(
      dtype_of(x), x.const_data_ptr(), weight.const_data_ptr(), out.mutable_data_ptr(),
      rows, x.size(-1), static_cast<float>(eps), stream_of(x)));
  return out;
}


std::tuple<at::Tensor&, at::Tensor&> fused_add_rms_norm_out(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight,
    double eps,
    at::Tensor& out,
    at::Tensor& sum) {
  constexpr const char* op = "fused_add_rms_norm";
  check_fused_add_rms_norm(x, residual, weight);
  check_out(op, "out", out, x, x.sizes());
  check_out(op, "sum", sum, x, x.sizes());
  const int64_t rows = rows_of(op, x);
  if (rows == 0) {
    return {out, sum};
  }
  const c10::cuda::CUDAGuard guard(x.device());
  check_launched(op, launch_fused_add_rms_norm(
      dtype_of(x), x.const_data_ptr(), residual.const_data_ptr(), weight.const_data_ptr(),
      out.mutable_data_ptr(), sum.mutable_data_ptr(), rows, x.size(-1),
      static_cast<float>(eps), stream_of(x)));
  return {out, sum};
}


at::Tensor& silu_and_mul_out(const at::Tensor& x, at::Tensor& out) {
  constexpr const char* op = "silu_and_mul";
  check_silu_and_mul(x);
  check_out(op, "out", out, x, silu_and_mul_shape(x));
  const int64_t rows = rows_of(op, x);
  if (rows == 0) {
    return out;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  check_launched(op, launch_silu_and_mul(
      dtype_of(x), x.const_data_ptr(), out.mutable_data_ptr(), rows, out.size(-1),
      stream_of(x)));
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
  constexpr const char* op = "rotary_embedding";
  check_rotary_embedding(positions, query, key, cos_sin_cache, head_size);
  check_out(op, "query_out", query_out, query, query.sizes());
  check_out(op, "key_out", key_out, key, key.sizes());
  const int64_t num_tokens = positions.size(0);
  TORCH_CHECK(
      num_tokens <= kMaxBlocks, op, ": ", num_tokens,
      " tokens exceed the CUDA grid limit of ", kMaxBlocks);
  TORCH_CHECK(
      cos_sin_cache.size(1) <= kMaxRotDim, op, ": rot_dim ", cos_sin_cache.size(1),
      " exceeds the ", kMaxRotDim, " the CUDA kernel keeps in shared memory");
  if (num_tokens == 0) {
    return {query_out, key_out};
  }
  const RotaryShape shape =
      rotary_shape(positions, query, key, cos_sin_cache, head_size, is_neox);
  const c10::cuda::CUDAGuard guard(query.device());
  check_launched(op, launch_rotary_embedding(
      dtype_of(query), positions.const_data_ptr<int64_t>(), query.const_data_ptr(),
      key.const_data_ptr(), cos_sin_cache.const_data_ptr(), query_out.mutable_data_ptr(),
      key_out.mutable_data_ptr(), shape, stream_of(query)));
  return {query_out, key_out};
}


} // namespace
} // namespace compat_kernels::cuda

TORCH_LIBRARY_IMPL(compat_kernels, CUDA, m) {
  namespace fn = compat_kernels::functional;
  using namespace compat_kernels::cuda;
  m.impl("rms_norm", &fn::rms_norm<&rms_norm_out>);
  m.impl("fused_add_rms_norm", &fn::fused_add_rms_norm<&fused_add_rms_norm_out>);
  m.impl("silu_and_mul", &fn::silu_and_mul<&silu_and_mul_out>);
  m.impl("rotary_embedding", &fn::rotary_embedding<&rotary_embedding_out>);
  m.impl("rms_norm.out", &rms_norm_out);
  m.impl("fused_add_rms_norm.out", &fused_add_rms_norm_out);
  m.impl("silu_and_mul.out", &silu_and_mul_out);
  m.impl("rotary_embedding.out", &rotary_embedding_out);
}

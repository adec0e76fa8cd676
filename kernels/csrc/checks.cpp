#include "checks.h"

#include <c10/util/Exception.h>

namespace compat_kernels {
namespace {

bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf;
}

// Kernels index raw row-major memory, so every data tensor must be a dense
// float32/bfloat16/float16 block.
void check_data_tensor(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(
      is_supported_float(t.scalar_type()),
      op, ": ", name, " must be float32, bfloat16 or float16, got ",
      t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_matches(
    const char* op,
    const char* name,
    const at::Tensor& t,
    const char* ref_name,
    const at::Tensor& ref) {
  TORCH_CHECK(
      t.scalar_type() == ref.scalar_type(),
      op, ": ", name, " and ", ref_name, " must have the same dtype, got ",
      t.scalar_type(), " and ", ref.scalar_type());
  TORCH_CHECK(
      t.device() == ref.device(),
      op, ": ", name, " and ", ref_name, " must be on the same device, got ",
      t.device(), " and ", ref.device());
}

void check_norm_weight(
    const char* op,
    const at::Tensor& x,
    const at::Tensor& weight) {
  TORCH_CHECK(x.dim() >= 1, op, ": x must have at least one dimension");
  TORCH_CHECK(x.size(-1) > 0, op, ": x must have a non-empty last dimension");
  TORCH_CHECK(
      weight.dim() == 1 && weight.size(0) == x.size(-1),
      op, ": weight must have shape [", x.size(-1),
      "] to match the last dimension of x, got ", weight.sizes());
}

// Query and key are [num_tokens, num_heads * head_size] or
// [num_tokens, num_heads, head_size].
void check_rotary_operand(
    const char* name,
    const at::Tensor& t,
    int64_t num_tokens,
    int64_t head_size) {
  constexpr const char* op = "rotary_embedding";
  check_data_tensor(op, name, t);
  TORCH_CHECK(
      t.dim() == 2 || t.dim() == 3,
      op, ": ", name, " must be 2-D or 3-D, got shape ", t.sizes());
  TORCH_CHECK(
      t.size(0) == num_tokens,
      op, ": ", name, ".size(0) must equal the number of positions (",
      num_tokens, "), got ", t.size(0));
  const int64_t token_width = t.dim() == 2 ? t.size(1) : t.size(1) * t.size(2);
  TORCH_CHECK(
      (t.dim() == 2 || t.size(2) == head_size) && token_width % head_size == 0,
      op, ": ", name, " of shape ", t.sizes(),
      " does not split into heads of size ", head_size);
}

} // namespace

void check_rms_norm(const at::Tensor& x, const at::Tensor& weight) {
  constexpr const char* op = "rms_norm";
  check_data_tensor(op, "x", x);
  check_data_tensor(op, "weight", weight);
  check_matches(op, "weight", weight, "x", x);
  check_norm_weight(op, x, weight);
}

void check_fused_add_rms_norm(
    const at::Tensor& x,
    const at::Tensor& residual,
    const at::Tensor& weight) {
  constexpr const char* op = "fused_add_rms_norm";
  check_data_tensor(op, "x", x);
  check_data_tensor(op, "residual", residual);
  check_data_tensor(op, "weight", weight);
  check_matches(op, "residual", residual, "x", x);
  check_matches(op, "weight", weight, "x", x);
  TORCH_CHECK(
      residual.sizes() == x.sizes(),
      op, ": residual must have the same shape as x ", x.sizes(), ", got ",
      residual.sizes());
  check_norm_weight(op, x, weight);
}

void check_silu_and_mul(const at::Tensor& x) {
  constexpr const char* op = "silu_and_mul";
  check_data_tensor(op, "x", x);
  TORCH_CHECK(x.dim() >= 1, op, ": x must have at least one dimension");
  TORCH_CHECK(
      x.size(-1) > 0 && x.size(-1) % 2 == 0,
      op, ": the last dimension of x must be even and non-zero, got shape ",
      x.sizes());
}

std::vector<int64_t> silu_and_mul_shape(const at::Tensor& x) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() /= 2;
  return shape;
}

void check_rotary_embedding(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size) {
  constexpr const char* op = "rotary_embedding";
  TORCH_CHECK(head_size > 0, op, ": head_size must be positive, got ", head_size);
  TORCH_CHECK(
      positions.scalar_type() == at::kLong && positions.dim() == 1,
      op, ": positions must be a 1-D int64 tensor, got ",
      positions.scalar_type(), " of shape ", positions.sizes());
  TORCH_CHECK(positions.is_contiguous(), op, ": positions must be contiguous");
  TORCH_CHECK(
      positions.device() == query.device(),
      op, ": positions and query must be on the same device, got ",
      positions.device(), " and ", query.device());

  const int64_t num_tokens = positions.size(0);
  check_rotary_operand("query", query, num_tokens, head_size);
  check_rotary_operand("key", key, num_tokens, head_size);
  check_matches(op, "key", key, "query", query);

  check_data_tensor(op, "cos_sin_cache", cos_sin_cache);
  check_matches(op, "cos_sin_cache", cos_sin_cache, "query", query);
  TORCH_CHECK(
      cos_sin_cache.dim() == 2,
      op, ": cos_sin_cache must be 2-D [max_position, rot_dim], got shape ",
      cos_sin_cache.sizes());
  const int64_t rot_dim = cos_sin_cache.size(1);
  TORCH_CHECK(
      rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_size,
      op, ": cos_sin_cache.size(1) (rot_dim) must be even and in [2, head_size=",
      head_size, "], got ", rot_dim);
}

void check_out(
    const char* op,
    const char* name,
    const at::Tensor& out,
    const at::Tensor& like,
    at::IntArrayRef sizes) {
  check_matches(op, name, out, "the inputs", like);
  TORCH_CHECK(out.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK(
      out.sizes() == sizes,
      op, ": ", name, " must have shape ", sizes, ", got ", out.sizes());
}

RotaryShape rotary_shape(
    const at::Tensor& positions,
    const at::Tensor& query,
    const at::Tensor& key,
    const at::Tensor& cos_sin_cache,
    int64_t head_size,
    bool is_neox) {
  const int64_t num_tokens = positions.size(0);
  return RotaryShape{
      num_tokens,
      query.numel() / num_tokens,
      key.numel() / num_tokens,
      head_size,
      cos_sin_cache.size(1),
      cos_sin_cache.size(0),
      is_neox,
  };
}

} // namespace compat_kernels

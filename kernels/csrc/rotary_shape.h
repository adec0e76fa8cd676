#pragma once

// The geometry of a rotary_embedding call, shared by the CPU kernels and the
// CUDA launchers. Plain data with no ATen, so nvcc can include it too.

#include <cstdint>

namespace compat_kernels {

struct RotaryShape {
  int64_t num_tokens;
  int64_t query_width; // num_heads * head_size
  int64_t key_width; // num_kv_heads * head_size
  int64_t head_size;
  int64_t rot_dim;
  int64_t max_position;
  bool is_neox;
};

} // namespace compat_kernels

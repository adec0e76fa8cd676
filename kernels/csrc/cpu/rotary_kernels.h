#pragma once

// Rotary position embedding with vLLM semantics. A cos_sin_cache row holds cos
// in its first rot_dim / 2 entries and sin in the rest. Each head's first
// rot_dim dimensions are rotated pairwise by the token position's angles; the
// remaining head_size - rot_dim pass through. Compiled per instruction set;
// see vec_utils.h.

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "kernels.h"
#include "vec_utils.h"

namespace compat_kernels::cpu::CPU_CAPABILITY {

// NeoX style: dimension i is paired with i + embed_dim.
template <typename T>
void rotate_neox(const T* in, T* out, const T* cos, const T* sin, int64_t embed_dim) {
  vec_loop(embed_dim, [&](int64_t i, int64_t count) {
    const fVec x = load_float(in + i, count);
    const fVec y = load_float(in + embed_dim + i, count);
    const fVec c = load_float(cos + i, count);
    const fVec s = load_float(sin + i, count);
    store_float(out + i, x * c - y * s, count);
    store_float(out + embed_dim + i, y * c + x * s, count);
  });
}

// GPT-J style: dimension 2i is paired with 2i + 1.
template <typename T>
void rotate_gptj(const T* in, T* out, const T* cos, const T* sin, int64_t embed_dim) {
  int64_t i = 0;
  for (; i + kVecSize <= embed_dim; i += kVecSize) {
    // Split 2 * kVecSize interleaved values into even (x) and odd (y) lanes.
    const auto [x, y] = at::vec::deinterleave2(
        load_float(in + 2 * i), load_float(in + 2 * i + kVecSize));
    const fVec c = load_float(cos + i);
    const fVec s = load_float(sin + i);
    const auto [lo, hi] = at::vec::interleave2(x * c - y * s, y * c + x * s);
    store_float(out + 2 * i, lo);
    store_float(out + 2 * i + kVecSize, hi);
  }
  for (; i < embed_dim; ++i) {
    const float x = static_cast<float>(in[2 * i]);
    const float y = static_cast<float>(in[2 * i + 1]);
    const float c = static_cast<float>(cos[i]);
    const float s = static_cast<float>(sin[i]);
    out[2 * i] = static_cast<T>(x * c - y * s);
    out[2 * i + 1] = static_cast<T>(y * c + x * s);
  }
}

// Rotates the `width / head_size` heads of one token.
template <typename T>
void rotate_token(const T* in, T* out, int64_t width, const T* cos_sin, const RotaryShape& shape) {
  const int64_t embed_dim = shape.rot_dim / 2;
  const T* cos = cos_sin;
  const T* sin = cos_sin + embed_dim;
  for (int64_t head = 0; head < width; head += shape.head_size) {
    if (shape.is_neox) {
      rotate_neox(in + head, out + head, cos, sin, embed_dim);
    } else {
      rotate_gptj(in + head, out + head, cos, sin, embed_dim);
    }
    std::copy(in + head + shape.rot_dim, in + head + shape.head_size, out + head + shape.rot_dim);
  }
}

template <typename T>
void rotary_embedding_kernel(
    const int64_t* positions, const T* query, const T* key,
    const T* cos_sin_cache, T* query_out, T* key_out, const RotaryShape& shape) {
  const int64_t token_width = shape.query_width + shape.key_width;
  at::parallel_for(0, shape.num_tokens, grain_rows(token_width), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pos = positions[t];
      // Validated here, not up front, because only the kernel reads the
      // values; parallel_for rethrows on the calling thread.
      TORCH_CHECK(
          pos >= 0 && pos < shape.max_position,
          "rotary_embedding: positions[", t, "] = ", pos,
          " is outside the cos_sin_cache rows [0, ", shape.max_position, ")");
      const T* cos_sin = cos_sin_cache + pos * shape.rot_dim;
      const int64_t q = t * shape.query_width;
      const int64_t k = t * shape.key_width;
      rotate_token(query + q, query_out + q, shape.query_width, cos_sin, shape);
      rotate_token(key + k, key_out + k, shape.key_width, cos_sin, shape);
    }
  });
}

} // namespace compat_kernels::cpu::CPU_CAPABILITY

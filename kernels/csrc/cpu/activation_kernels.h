#pragma once

// silu_and_mul, the SwiGLU gate: for a row [a, b] (each of width d),
// out = silu(a) * b = a / (1 + exp(-a)) * b, in float. Compiled per
// instruction set; see vec_utils.h.

#include <ATen/Parallel.h>

#include "vec_utils.h"

namespace compat_kernels::cpu::CPU_CAPABILITY {

template <typename T>
void silu_and_mul_row(const T* in, T* out, int64_t d) {
  const fVec one(1.f);
  vec_loop(d, [&](int64_t i, int64_t count) {
    const fVec a = load_float(in + i, count);
    const fVec b = load_float(in + d + i, count);
    // exp_u20 (20 ulp) is ATen's in-header polynomial exp: unlike exp() it
    // does not call into SLEEF, and its error is far below bf16/fp16 rounding.
    const fVec silu = a / (one + a.neg().exp_u20());
    store_float(out + i, silu * b, count);
  });
}

template <typename T>
void silu_and_mul_kernel(const T* x, T* out, int64_t rows, int64_t d) {
  at::parallel_for(0, rows, grain_rows(2 * d), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      silu_and_mul_row(x + row * 2 * d, out + row * d, d);
    }
  });
}

} // namespace compat_kernels::cpu::CPU_CAPABILITY

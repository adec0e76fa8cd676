#pragma once

// RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight per row, statistics in
// float. Compiled per instruction set; see vec_utils.h.

#include <ATen/Parallel.h>

#include <cmath>

#include "vec_utils.h"

namespace compat_kernels::cpu::CPU_CAPABILITY {

template <typename T>
float sum_of_squares(const T* x, int64_t n) {
  fVec acc(0.f);
  vec_loop(n, [&](int64_t i, int64_t count) {
    const fVec v = load_float(x + i, count);
    acc = at::vec::fmadd(v, v, acc);
  });
  return reduce_sum(acc);
}

inline float inverse_rms(float sum_sq, int64_t n, float eps) {
  return 1.f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
}

// out = x * inv_rms * weight, rounded to T once.
template <typename T>
void scale_row(const T* x, const T* weight, T* out, int64_t n, float inv_rms) {
  const fVec scale(inv_rms);
  vec_loop(n, [&](int64_t i, int64_t count) {
    const fVec v = load_float(x + i, count) * scale * load_float(weight + i, count);
    store_float(out + i, v, count);
  });
}

// sum = x + residual rounded to T (exactly what `x + residual` gives in T);
// returns the sum of squares *of the rounded values*, so the normalised
// output equals rms_norm(sum) bit for bit.
template <typename T>
float add_row(const T* x, const T* residual, T* sum, int64_t n) {
  fVec acc(0.f);
  vec_loop(n, [&](int64_t i, int64_t count) {
    store_float(
        sum + i, load_float(x + i, count) + load_float(residual + i, count), count);
    const fVec rounded = load_float(sum + i, count);
    acc = at::vec::fmadd(rounded, rounded, acc);
  });
  return reduce_sum(acc);
}

template <typename T>
void rms_norm_kernel(const T* x, const T* weight, T* out, int64_t rows, int64_t n, float eps) {
  at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* x_row = x + row * n;
      const float inv = inverse_rms(sum_of_squares(x_row, n), n, eps);
      scale_row(x_row, weight, out + row * n, n, inv);
    }
  });
}

template <typename T>
void fused_add_rms_norm_kernel(
    const T* x, const T* residual, const T* weight, T* out, T* sum,
    int64_t rows, int64_t n, float eps) {
  at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      T* sum_row = sum + row * n;
      const float sum_sq = add_row(x + row * n, residual + row * n, sum_row, n);
      scale_row(sum_row, weight, out + row * n, n, inverse_rms(sum_sq, n, eps));
    }
  });
}

} // namespace compat_kernels::cpu::CPU_CAPABILITY

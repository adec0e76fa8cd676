#pragma once

// Helpers that let one kernel body serve float32, bfloat16 and float16:
// storage is loaded into at::vec::Vectorized<float>, all arithmetic happens in
// float, and results are rounded back to the storage type once, on store.
//
// Like every header included by kernels_impl.h, this one is compiled once per
// instruction set, so it lives in the CPU_CAPABILITY namespace: each build gets
// distinct symbols, as in ATen (see Note [CPU_CAPABILITY namespace] there).

#ifndef CPU_CAPABILITY
#error "vec_utils.h is only for kernels_<isa>.cpp, which define CPU_CAPABILITY"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

namespace compat_kernels::cpu::CPU_CAPABILITY {

using fVec = at::vec::Vectorized<float>;
constexpr int64_t kVecSize = fVec::size();

// Elements per parallel_for chunk; below this, threading costs more than it
// saves (the threshold ATen's TensorIterator uses).
constexpr int64_t kGrainElements = 32768;

// parallel_for grain, in rows, for rows of `row_elements` elements each.
inline int64_t grain_rows(int64_t row_elements) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_elements));
}

// Loads `count` (<= kVecSize) elements widened to float; missing lanes are 0.
template <typename T>
inline fVec load_float(const T* ptr, int64_t count = kVecSize) {
  if constexpr (std::is_same_v<T, float>) {
    return fVec::loadu(ptr, count);
  } else {
    if (count == kVecSize) {
      fVec out;
      at::vec::load_to_float<T>(ptr, out);
      return out;
    }
    // Ragged tail: stage through a zero-filled buffer so no lane reads past
    // the end of the row.
    std::array<T, kVecSize> staged{};
    std::copy_n(ptr, count, staged.begin());
    return load_float(staged.data());
  }
}

// Rounds `v` to T and stores the first `count` (<= kVecSize) lanes.
template <typename T>
inline void store_float(T* ptr, const fVec& v, int64_t count = kVecSize) {
  if constexpr (std::is_same_v<T, float>) {
    v.store(ptr, count);
  } else {
    at::vec::convert_from_float<T>(v, v).store(ptr, count);
  }
}

// Calls body(offset, count) over [0, n): full vectors first, then once for the
// ragged tail. In the main loop count is the constant kVecSize, so after
// inlining load_float/store_float take their full-vector paths.
template <typename Body>
inline void vec_loop(int64_t n, const Body& body) {
  int64_t i = 0;
  for (; i + kVecSize <= n; i += kVecSize) {
    body(i, kVecSize);
  }
  if (i < n) {
    body(i, n - i);
  }
}

inline float reduce_sum(const fVec& v) {
  return at::vec::vec_reduce_all<float>(
      [](const fVec& a, const fVec& b) { return a + b; }, v);
}

} // namespace compat_kernels::cpu::CPU_CAPABILITY

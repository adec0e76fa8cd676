#pragma once

// Raw-pointer CPU kernels behind the ops. Their bodies (*_kernels.h) are
// compiled once per instruction set (kernels_<isa>.cpp) into a KernelTable;
// kernels<T>() picks the table for the running CPU, the way ATen's own
// DispatchStub does, so one wheel is both portable and fast.

#include <ATen/Dispatch.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <string>

#include "../rotary_shape.h"

// COMPAT_KERNELS_HAVE_AVX2 is defined by setup.py when it compiles
// kernels_avx2.cpp (x86-64 only).

// Kernels exist for float32/bfloat16/float16 only (the input checks reject
// every other dtype); each case runs the lambda with `scalar_t` bound.
#define COMPAT_KERNELS_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_SWITCH(                                      \
      TYPE,                                                \
      NAME,                                                \
      AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)            \
          AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)     \
              AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__))

namespace compat_kernels::cpu {

using compat_kernels::RotaryShape;

// All tensors are dense row-major; `rows` x `n` is the [..., n] view of x.
template <typename T>
struct KernelTable {
  void (*rms_norm)(const T* x, const T* weight, T* out, int64_t rows, int64_t n, float eps);
  void (*fused_add_rms_norm)(
      const T* x, const T* residual, const T* weight, T* out, T* sum,
      int64_t rows, int64_t n, float eps);
  // x is rows x 2d, out is rows x d.
  void (*silu_and_mul)(const T* x, T* out, int64_t rows, int64_t d);
  void (*rotary_embedding)(
      const int64_t* positions, const T* query, const T* key,
      const T* cos_sin_cache, T* query_out, T* key_out, const RotaryShape& shape);
};

// Baseline x86-64 (SSE2) or the target's default ISA: runs on any CPU.
template <typename T>
KernelTable<T> default_kernels();

#ifdef COMPAT_KERNELS_HAVE_AVX2
// AVX2 + FMA + F16C; only safe to call when capability() is "avx2".
template <typename T>
KernelTable<T> avx2_kernels();
#endif

// The instruction set the kernels use here: "avx2" or "default".
std::string capability();

template <typename T>
const KernelTable<T>& kernels();

} // namespace compat_kernels::cpu

// The kernels built for AVX2 + FMA + F16C, used when dispatch.cpp finds the
// CPU supports them. setup.py compiles this file alone with -mavx2 -mfma
// -mf16c (the ISA ATen's own AVX2 kernels target) and links it last.
//
// Those flags also apply to inline functions of the torch/c10/std headers
// below. An out-of-line copy emitted only here is only called from here, so
// only after the CPU check. A copy emitted here *and* by a baseline object is
// merged by the linker, which keeps the first one it sees, i.e. the baseline
// copy: that is why this object must come last on the link line.

#if !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma -mf16c (see setup.py)"
#endif

#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2

#include "kernels_impl.h"

#include <immintrin.h>

namespace compat_kernels::cpu {
namespace {

// Compiles only if ATen's AVX2 Vectorized<float> (which converts to __m256)
// was selected: a header that included ATen's vec headers before
// CPU_CAPABILITY_AVX2 was defined would have pulled in the generic one.
[[maybe_unused]] __m256 require_avx2_vectorized(const AVX2::fVec& v) {
  return v;
}

} // namespace

template <typename T>
KernelTable<T> avx2_kernels() {
  return AVX2::make_kernel_table<T>();
}

template KernelTable<float> avx2_kernels<float>();
template KernelTable<c10::BFloat16> avx2_kernels<c10::BFloat16>();
template KernelTable<c10::Half> avx2_kernels<c10::Half>();

} // namespace compat_kernels::cpu
